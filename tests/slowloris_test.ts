// End to end: clients that send too slowly, or go quiet, are timed out by a real server process,
// and the server keeps answering everyone else meanwhile.
import assert from "node:assert/strict";
import net from "node:net";
import {
  connect,
  get,
  helloWorker,
  request,
  type Response1,
  type ResponseReader,
  send,
  startServer,
} from "./_server.ts";

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Reads one response, giving up after `ms`; the caller closes the connection either way. */
async function readWithin(reader: ResponseReader, ms: number): Promise<Response1 | undefined | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      reader.read(),
      new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

Deno.test("a client trickling its header one byte every 300 ms gets 408 once --header-timeout passes", async () => {
  await using server = await startServer(["--quiet", "--workers", "2", "--header-timeout", "2"]);
  // About 90 bytes: at 300 ms a byte this takes 27 s, far past the 2 s timeout.
  const head = `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Padding: ${"a".repeat(30)}\r\n\r\n`;
  const slow = await connect(server.port);
  const started = performance.now();
  let stop = false;

  const trickle = (async () => {
    for (let i = 0; i < head.length && !stop; i++) {
      try {
        await send(slow.conn, head[i]);
      } catch {
        return; // the server closed the connection
      }
      await delay(300);
    }
  })();

  // Meanwhile, ordinary requests on other connections must be answered at once.
  const others: number[] = [];
  const otherFailures: string[] = [];
  const otherRequests = (async () => {
    while (!stop) {
      const begun = performance.now();
      try {
        const response = await request(server.port, get("/"));
        if (response.status !== 200 || helloWorker(response.text) === undefined) {
          otherFailures.push(response.statusLine);
        }
      } catch (error) {
        otherFailures.push(String(error));
      }
      others.push(performance.now() - begun);
      await delay(200);
    }
  })();

  let response: Response1 | undefined | "timeout";
  let answeredAt: number;
  let closed: boolean;
  let closedAt: number;
  try {
    response = await readWithin(slow.reader, 6000);
    answeredAt = performance.now() - started;
    closed = response !== "timeout" && await slow.reader.waitClosed(2000);
    closedAt = performance.now() - started;
  } finally {
    stop = true;
    closeQuietly(slow.conn);
    await trickle;
    await otherRequests;
  }

  if (response === "timeout") assert.fail("no answer to the slow header within 6 s");
  if (response === undefined) assert.fail(`connection closed after ${answeredAt.toFixed(0)} ms without an answer`);
  assert.equal(response.status, 408, `got "${response.statusLine}"`);
  assert.ok(closed, "the connection stayed open after the 408");
  assert.ok(answeredAt >= 1800, `408 came after only ${answeredAt.toFixed(0)} ms; the timeout is 2 s`);
  assert.ok(closedAt <= 4000, `the connection closed ${closedAt.toFixed(0)} ms after it started; expected 2-4 s`);
  assert.deepEqual(otherFailures, [], "a GET / during the trickle did not get hello.html");
  assert.ok(others.length >= 4, `only ${others.length} other requests ran during the trickle`);
  const slowest = Math.max(...others);
  assert.ok(slowest < 500, `a GET / during the trickle took ${slowest.toFixed(0)} ms`);
});

Deno.test("an idle keep-alive connection is closed without a word after --keepalive-timeout", async () => {
  await using server = await startServer(["--quiet", "--workers", "2", "--keepalive-timeout", "1"]);
  const { conn, reader } = await connect(server.port);
  try {
    await send(conn, get("/"));
    const first = await reader.read();
    assert.equal(first?.status, 200);
    const idleFrom = performance.now();
    assert.ok(await reader.waitClosed(3500), "the idle connection was not closed within 3.5 s, or got bytes");
    const idle = performance.now() - idleFrom;
    assert.ok(idle >= 800, `closed after ${idle.toFixed(0)} ms idle; the timeout is 1 s`);
    assert.ok(idle <= 3000, `closed after ${idle.toFixed(0)} ms idle; expected 1-3 s`);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("a body that stops short of its Content-Length gets 408 after --body-timeout", async () => {
  await using server = await startServer(["--quiet", "--workers", "2", "--body-timeout", "1"]);
  const { conn, reader } = await connect(server.port);
  try {
    const started = performance.now();
    await send(conn, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc");
    const response = await readWithin(reader, 5000);
    const answeredAt = performance.now() - started;
    if (response === "timeout") assert.fail("no answer within 5 s to a body 7 bytes short");
    if (response === undefined) assert.fail(`connection closed after ${answeredAt.toFixed(0)} ms without an answer`);
    assert.equal(response.status, 408, `got "${response.statusLine}"`);
    assert.ok(answeredAt >= 800, `408 came after only ${answeredAt.toFixed(0)} ms; the timeout is 1 s`);
    assert.ok(answeredAt <= 3000, `408 came after ${answeredAt.toFixed(0)} ms; expected 1-3 s`);
    assert.ok(await reader.waitClosed(2000), "the connection stayed open after the 408");
  } finally {
    closeQuietly(conn);
  }
});

/** Opens a connection to `port` and resets it (RST) as soon as it is established. */
function connectAndReset(port: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.resetAndDestroy();
      resolve();
    });
    socket.on("error", () => resolve());
  });
}

Deno.test("clients that reset before their connection is accepted cost the accept loop nothing", async () => {
  await using server = await startServer(["--quiet", "--workers", "1"]);
  // 400 resets back to back: at the 50 ms pause once taken after every failed accept, they would
  // hold the accept loop for 20 s.
  const resets = (async () => {
    for (let i = 0; i < 400; i++) await connectAndReset(server.port);
  })();
  await delay(100);
  const start = performance.now();
  const answered = await request(server.port, get("/"));
  const waited = performance.now() - start;
  await resets;
  assert.equal(answered.status, 200);
  assert.ok(waited < 3000, `a request waited ${Math.round(waited)} ms behind the resets`);
  // Nothing worth a log line happened.
  assert.deepEqual(server.errors, []);
  assert.equal((await request(server.port, get("/"))).status, 200);
});
