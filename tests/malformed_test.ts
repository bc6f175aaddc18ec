// End to end: every malformed request of the shared table, sent over a raw socket to a real
// server process, gets its status and then a closed connection.
import assert from "node:assert/strict";
import { DEFAULT_LIMITS, frameRequest, type RequestLimits } from "../http/mod.ts";
import { BAD_CASES, type BadCase, bytes, small } from "./_malformed.ts";
import { assertHello, connect, get, request, send, type ServerProcess, startServer } from "./_server.ts";

// How long a row may take to be answered, and then to be closed.
const ANSWER_MS = 3000;
const CLOSE_MS = 3000;

/** The command-line flags that give a server these limits. */
function limitFlags(limits: RequestLimits): string[] {
  return [
    ["--max-request-line", limits.maxRequestLine],
    ["--max-header-bytes", limits.maxHeaderBytes],
    ["--max-header-count", limits.maxHeaderCount],
    ["--max-body", limits.maxBody],
  ].flatMap(([flag, value]) => [String(flag), String(value)]);
}

function sameLimits(a: RequestLimits, b: RequestLimits): boolean {
  return a.maxRequestLine === b.maxRequestLine && a.maxHeaderBytes === b.maxHeaderBytes &&
    a.maxHeaderCount === b.maxHeaderCount && a.maxBody === b.maxBody;
}

type ServerKind = "default" | "small";

/**
 * Which server runs a row. Rows without limits run on the default server, rows with `small` on
 * the small one. A row with other limits (say only `maxBody: 10`) runs on the small server when
 * the framer gives it the same status under `small`; otherwise no server here can run it.
 */
function serverFor(row: BadCase): ServerKind {
  if (row.limits === undefined || sameLimits(row.limits, DEFAULT_LIMITS)) return "default";
  if (sameLimits(row.limits, small)) return "small";
  const underSmall = frameRequest(bytes(row.input), small);
  if (underSmall.type === "error" && underSmall.error.status === row.status) return "small";
  throw new Error(`Row "${row.name}" needs limits ${JSON.stringify(row.limits)}, which neither server has`);
}

const ROWS: Record<ServerKind, BadCase[]> = { default: [], small: [] };
for (const row of BAD_CASES) ROWS[serverFor(row)].push(row);

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** Sends one row on a fresh connection; resolves with a description of what went wrong, if anything. */
async function runRow(port: number, row: BadCase): Promise<string | undefined> {
  const input = JSON.stringify(row.input.length > 200 ? `${row.input.slice(0, 200)}...` : row.input);
  const { conn, reader } = await connect(port);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    try {
      await send(conn, bytes(row.input));
    } catch {
      // The server may answer and close before a long input is all written; the answer is still readable.
    }
    // Closing our end makes a read that waits forever give up.
    let timedOut = false;
    timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
    }, ANSWER_MS);
    const response = await reader.read();
    clearTimeout(timer);
    if (timedOut) return `no answer within ${ANSWER_MS} ms to ${input}`;
    if (response === undefined) return `connection closed without an answer to ${input}`;
    if (response.status !== row.status) {
      return `expected ${row.status}, got "${response.statusLine}" for ${input}`;
    }
    if (response.headers.get("connection") !== "close") {
      return `the ${row.status} answer lacks "Connection: close" (got ${response.headers.get("connection")})`;
    }
    // A valid request sent now must not be read: the server has to close, with no more bytes.
    try {
      await send(conn, get("/"));
    } catch {
      // already closed by the server: that is the point
    }
    if (!await reader.waitClosed(CLOSE_MS)) {
      return `after the ${row.status} answer the connection stayed open, or sent more bytes, for ${input}`;
    }
    return undefined;
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

async function runTable(t: Deno.TestContext, server: ServerProcess, rows: readonly BadCase[]): Promise<void> {
  for (const row of rows) {
    await t.step(`${row.name} gets ${row.status} and a closed connection`, async () => {
      const problem = await runRow(server.port, row);
      if (problem !== undefined) assert.fail(problem);
    });
  }
  await t.step("GET / still answers 200 with hello.html afterwards", async () => {
    const response = await request(server.port, get("/"));
    assert.equal(response.status, 200);
    assertHello(response.text);
  });
}

Deno.test("every malformed request is routed to a server whose limits give it its status", () => {
  assert.equal(ROWS.default.length + ROWS.small.length, BAD_CASES.length);
  assert.ok(BAD_CASES.length >= 60, `only ${BAD_CASES.length} rows run end to end`);
  assert.ok(ROWS.small.length > 0, "no row exercises the small limits");
});

Deno.test(`malformed requests to a server with default limits (${ROWS.default.length} rows)`, async (t) => {
  await using server = await startServer(["--quiet", "--workers", "2"]);
  await runTable(t, server, ROWS.default);
});

Deno.test(`malformed requests to a server with small limits (${ROWS.small.length} rows)`, async (t) => {
  await using server = await startServer(["--quiet", "--workers", "2", ...limitFlags(small)]);
  await runTable(t, server, ROWS.small);
});
