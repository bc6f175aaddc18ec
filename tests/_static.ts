// Helpers for the static file server tests: a temporary site on disk, a server serving it, and
// time-bounded raw requests (fetch would normalise the URLs these tests need to send as written).
import { connect, type Response1, send, type ServerProcess, startServer, STATIC_ROOT } from "./_server.ts";

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** How long any one request may take before the test gives up on it. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** `hello.html` and `404.html` as shipped; every temporary root gets copies. */
export const HELLO = await Deno.readFile(`${STATIC_ROOT}hello.html`);
export const NOT_FOUND = await Deno.readFile(`${STATIC_ROOT}404.html`);

/** Files to create under a root: relative path to contents. */
export type Files = Record<string, string | Uint8Array>;

/** Writes `files` under `dir`, creating folders as needed. */
export async function writeFiles(dir: string, files: Files): Promise<void> {
  for (const [path, contents] of Object.entries(files)) {
    const full = `${dir}/${path}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    await Deno.writeFile(full, typeof contents === "string" ? encoder.encode(contents) : contents);
  }
}

/** A temporary folder holding a root (`<parent>/root`) and a running server serving it. */
export class StaticSite implements AsyncDisposable {
  constructor(readonly parent: string, readonly root: string, readonly server: ServerProcess) {}

  get port(): number {
    return this.server.port;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.server[Symbol.asyncDispose]();
    } finally {
      await Deno.remove(this.parent, { recursive: true });
    }
  }
}

export interface SiteOptions {
  /** Files under the root, besides hello.html and 404.html. */
  files?: Files;
  /** Extra server flags, after `--root`. */
  args?: string[];
  /** Anything else to prepare (symlinks, files outside the root) before the server starts. */
  setup?: (paths: { parent: string; root: string }) => Promise<void>;
}

/**
 * Makes a temporary folder with `Deno.makeTempDir()`, a root inside it holding copies of
 * hello.html and 404.html plus `files`, and starts the server on it. Dispose to stop the
 * server and remove the folder.
 */
export async function openSite(options: SiteOptions = {}): Promise<StaticSite> {
  const parent = await Deno.makeTempDir({ prefix: "static_test_" });
  try {
    const root = `${parent}/root`;
    await writeFiles(root, { "hello.html": HELLO, "404.html": NOT_FOUND, ...options.files });
    await options.setup?.({ parent, root });
    const server = await startServer(["--root", root, "--workers", "2", "--quiet", ...(options.args ?? [])]);
    return new StaticSite(parent, root, server);
  } catch (error) {
    await Deno.remove(parent, { recursive: true });
    throw error;
  }
}

/**
 * Sends raw requests (strings or bytes) in one write on one connection and reads one
 * response per request; `heads[i]` marks a response to HEAD. Fails after `timeoutMs`.
 */
export async function exchange(
  port: number,
  raws: Array<string | Uint8Array>,
  heads: boolean[] = [],
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<Response1[]> {
  const { conn, reader } = await connect(port);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
  }, timeoutMs);
  try {
    const parts = raws.map((raw) => typeof raw === "string" ? encoder.encode(raw) : raw);
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      all.set(part, offset);
      offset += part.length;
    }
    await send(conn, all);
    const responses: Response1[] = [];
    for (let i = 0; i < raws.length; i++) {
      const response = await reader.read({ head: heads[i] ?? false });
      if (!response) {
        throw new Error(
          timedOut
            ? `No response to request ${i + 1} within ${timeoutMs} ms`
            : `Connection closed before response ${i + 1}`,
        );
      }
      responses.push(response);
    }
    return responses;
  } finally {
    clearTimeout(timer);
    if (!timedOut) conn.close();
  }
}

/** One request on a fresh connection, bounded in time. */
export async function fetchRaw(
  port: number,
  raw: string | Uint8Array,
  options: { head?: boolean; timeoutMs?: number } = {},
): Promise<Response1> {
  const [response] = await exchange(port, [raw], [options.head ?? false], options.timeoutMs);
  return response;
}

/** A request line and Host header for `method target`, with extra header lines (each ending in CRLF). */
export function req(method: string, target: string, extra = ""): string {
  return `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
}

/** A short description of a response, for assertion messages. */
export function describe(response: Response1): string {
  const headers = [...response.headers].map(([k, v]) => `${k}: ${v}`).join("; ");
  const body = response.body.length > 200
    ? `${latin1.decode(response.body.subarray(0, 200))}...`
    : latin1.decode(response.body);
  return `${response.statusLine} [${headers}] ${JSON.stringify(body)}`;
}

/** The bytes as a binary string, for comparisons that print well. */
export function bin(bytes: Uint8Array): string {
  return latin1.decode(bytes);
}

/** One part of a `multipart/byteranges` body. */
export interface BytePart {
  contentRange: string;
  contentType: string | undefined;
  data: string;
}

/** Splits a `multipart/byteranges` body (RFC 9110 section 14.6) into its parts. */
export function parseByteRanges(contentType: string, body: Uint8Array): BytePart[] {
  const match = contentType.match(/boundary=(?:"([^"]+)"|([^;\s]+))/i);
  if (!match) throw new Error(`No boundary in ${contentType}`);
  const boundary = match[1] ?? match[2];
  const text = bin(body);
  const parts: BytePart[] = [];
  const delimiter = `--${boundary}`;
  let at = text.indexOf(delimiter);
  if (at === -1) throw new Error(`Boundary ${boundary} not in body`);
  for (;;) {
    at += delimiter.length;
    if (text.startsWith("--", at)) break; // close delimiter
    const headEnd = text.indexOf("\r\n\r\n", at);
    if (headEnd === -1) throw new Error("Part without a header section");
    const headers = new Map<string, string>();
    for (const line of text.slice(at, headEnd).split("\r\n").filter((l) => l !== "")) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const next = text.indexOf(`\r\n${delimiter}`, headEnd + 4);
    if (next === -1) throw new Error("Part without a following delimiter");
    parts.push({
      contentRange: headers.get("content-range") ?? "",
      contentType: headers.get("content-type"),
      data: text.slice(headEnd + 4, next),
    });
    at = next + 2;
  }
  return parts;
}

/** Sleeps for `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
