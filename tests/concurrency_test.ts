// End to end: many requests in flight per worker (--concurrency), against a real server process
// serving tests/fixtures/apps/async.ts, over raw sockets. Timing is asserted with wide margins.
import assert from "node:assert/strict";
import { connect, get, request, type Response1, send, type ServerProcess, startServer } from "./_server.ts";
import { within } from "./_within.ts";

const APP = "tests/fixtures/apps/async.ts";

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function ask(server: ServerProcess, path: string, ms = 15_000): Promise<Response1> {
  return within(ms, `GET ${path}`, request(server.port, get(path)));
}

function workerOf(response: Response1): number {
  assert.equal(response.status, 200, `${response.statusLine}: ${response.text}`);
  return (JSON.parse(response.text) as { workerId: number }).workerId;
}

/** Reads from `conn` until `count` server-sent events have arrived (within 10 s); returns the bytes read. */
function readEvents(conn: Deno.Conn, count: number): Promise<number> {
  return within(10_000, `${count} events`, readEventsUnbounded(conn, count));
}

async function readEventsUnbounded(conn: Deno.Conn, count: number): Promise<number> {
  const buffer = new Uint8Array(4096);
  let text = "";
  let bytes = 0;
  while ((text.match(/data: /g) ?? []).length < count) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`the stream ended after ${text.length} characters`);
    bytes += n;
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
  return bytes;
}

Deno.test("one worker answers 50 requests that each await 300 ms in about one await, not fifty", async () => {
  await using server = await startServer(["--workers", "1", "--quiet", "--app", APP]);
  const start = performance.now();
  const answers = await Promise.all(Array.from({ length: 50 }, () => ask(server, "/io?ms=300")));
  const elapsed = performance.now() - start;
  assert.ok(answers.every((r) => workerOf(r) === 0));
  assert.ok(elapsed < 3000, `50 awaiting requests on one worker took ${elapsed.toFixed(0)} ms (one at a time: 15 s)`);
});

Deno.test("--concurrency 1 runs one request at a time per worker, and 2 runs two", async () => {
  for (const [concurrency, least, most] of [[1, 1150, 4000], [2, 550, 1150]]) {
    await using server = await startServer([
      "--workers",
      "1",
      "--quiet",
      "--concurrency",
      String(concurrency),
      "--app",
      APP,
    ]);
    await ask(server, "/io?ms=1");
    const start = performance.now();
    await Promise.all(Array.from({ length: 4 }, () => ask(server, "/io?ms=300")));
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= least && elapsed < most, `4 × 300 ms at concurrency ${concurrency}: ${elapsed.toFixed(0)} ms`);
  }
});

Deno.test("requests at once spread over the idle workers", async () => {
  await using server = await startServer(["--workers", "4", "--quiet", "--app", APP]);
  await delay(200);
  const answers = await Promise.all(Array.from({ length: 8 }, () => ask(server, "/io?ms=300")));
  const workers = new Set(answers.map(workerOf));
  assert.ok(workers.size >= 3, `8 requests went to workers ${[...workers]} of 4`);
});

Deno.test("while one worker's thread is blocked, requests keep flowing through the others", async () => {
  await using server = await startServer(["--workers", "2", "--quiet", "--app", APP]);
  const blocked = ask(server, "/block?ms=2500");
  await delay(200);
  const start = performance.now();
  const answers = await Promise.all(Array.from({ length: 20 }, () => ask(server, "/io?ms=50")));
  const elapsed = performance.now() - start;
  const blockedWorker = workerOf(await blocked);
  assert.ok(answers.every((r) => workerOf(r) !== blockedWorker), "a request went to the blocked worker");
  assert.ok(elapsed < 2000, `20 requests took ${elapsed.toFixed(0)} ms beside a blocked worker`);
});

Deno.test("the book's experiment holds with the defaults: / never waits behind /sleep", async () => {
  await using server = await startServer(["--quiet"]);
  const sleeping = ask(server, "/sleep");
  await delay(300);
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    assert.equal((await ask(server, "/")).status, 200);
    const elapsed = performance.now() - start;
    assert.ok(elapsed < 1000, `/ took ${elapsed.toFixed(0)} ms while /sleep ran`);
  }
  assert.equal((await sleeping).status, 200);
});

for (const close of [false, true]) {
  const kind = close ? "a Connection: close request" : "a keep-alive request";
  Deno.test(`request.signal aborts when the client of ${kind} goes away; one access line, no stack trace`, async () => {
    await using server = await startServer(["--workers", "1", "--app", APP]);
    const id = close ? "gone-close" : "gone-keepalive";
    const { conn } = await connect(server.port);
    await send(conn, get(`/watch?id=${id}&ms=20000`, close ? "Connection: close\r\n" : ""));
    await delay(300);
    conn.close();
    await server.waitForLine(new RegExp(`^app: ${id} aborted AbortError$`), 5000);
    const line = await server.waitForLine(new RegExp(`^GET /watch\\?id=${id}&ms=20000 `), 5000);
    assert.match(line, / 499 0B .* \(client gone\)$/);
    await server.waitForLine(new RegExp(`^app: ${id} completed`), 5000);
    assert.deepEqual(server.errors, [], "the server wrote to stderr");
    assert.equal((await ask(server, "/io?ms=1")).status, 200);
  });
}

Deno.test("a request past --handler-timeout while awaiting gets 503 and its signal aborts; the others on its worker go on", async () => {
  await using server = await startServer(["--workers", "1", "--handler-timeout", "1", "--app", APP]);
  const start = performance.now();
  const slow = ask(server, "/watch?id=slow&ms=20000").then((r) => [r, performance.now() - start] as const);
  // Starts later and ends after the late request's timeout, within its own.
  const other = delay(500).then(() => ask(server, "/io?ms=900")).then((r) => [r, performance.now() - start] as const);
  const [[late, lateAt], [fine, fineAt]] = await Promise.all([slow, other]);
  assert.equal(late.status, 503);
  assert.ok(lateAt >= 900 && lateAt < 2500, `the late request was answered after ${lateAt.toFixed(0)} ms`);
  assert.equal(workerOf(fine), 0);
  assert.ok(fineAt >= 1350, `the other request was answered after ${fineAt.toFixed(0)} ms`);
  await server.waitForLine(/^app: slow aborted TimeoutError$/, 5000);
  assert.ok(!server.output().includes("replaced"), `the worker was replaced:\n${server.output()}`);
});

Deno.test("a handler stuck in a synchronous loop gets its worker replaced; every request on it gets 503, in one log line", async () => {
  await using server = await startServer(["--workers", "1", "--handler-timeout", "1", "--app", APP]);
  const start = performance.now();
  const awaiting = Array.from({ length: 3 }, (_, i) => ask(server, `/io?ms=${5000 + i}`));
  await delay(200);
  const stuck = ask(server, "/spin");
  const answers = await Promise.all([...awaiting, stuck]);
  const elapsed = performance.now() - start;
  assert.deepEqual(answers.map((r) => r.status), [503, 503, 503, 503]);
  assert.ok(elapsed < 4000, `the answers took ${elapsed.toFixed(0)} ms`);
  const replaced = server.errors.filter((line) => /replaced/.test(line));
  assert.equal(replaced.length, 1, server.output());
  assert.match(replaced[0], /^Worker 0 replaced: Worker 0 is stuck: its event loop has not turned for \d+ ms; 4 jobs/);
  assert.equal(server.errors.length, 1, `more than one line on stderr:\n${server.output()}`);
  // The replacement serves.
  assert.equal(workerOf(await ask(server, "/io?ms=1")), 0);
});

// One body with Content-Length, and a stream of pieces all ready at once: 64 MiB either way, far
// more than the socket buffers hold, so writing the end of it waits for the client to read.
for (
  const [kind, id, path] of [
    ["the whole response", "big", "/big?id=big&mb=64"],
    ["the last piece of a stream", "chunks", "/chunks?id=chunks&n=64&kb=1024"],
  ]
) {
  Deno.test(`info.completed resolves only once ${kind} has been written to the client`, async () => {
    await using server = await startServer(["--workers", "1", "--app", APP]);
    const { conn } = await connect(server.port);
    await send(conn, get(path, "Connection: close\r\n"));
    const buffer = new Uint8Array(1 << 16);
    assert.ok(await within(10_000, "the first bytes", conn.read(buffer)));
    await delay(1000);
    const done = new RegExp(`^app: ${id} completed at (\\d+)$`);
    assert.ok(!server.lines.some((line) => done.test(line)), "completed before the body was read");
    const readUntil = Date.now();
    const total = await within(
      30_000,
      "the body",
      (async () => {
        let read = 0;
        for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) read += n;
        return read;
      })(),
    );
    conn.close();
    const line = await server.waitForLine(done, 5000);
    assert.ok(Number(line.match(done)![1]) >= readUntil, "completed before the client had read the body");
    assert.ok(total > 63 * 1024 * 1024, `only ${total} bytes arrived`);
  });
}

Deno.test("info.completed resolves after a streamed response's end, and when its client leaves", async () => {
  await using server = await startServer(["--workers", "1", "--app", APP]);
  const whole = await ask(server, "/sse?id=whole&n=3&gap=50");
  assert.equal(whole.status, 200);
  await server.waitForLine(/^app: whole completed at/, 5000);
  const { conn } = await connect(server.port);
  await send(conn, get("/sse?id=left&n=1000&gap=20"));
  await readEvents(conn, 3);
  conn.close();
  await server.waitForLine(/^app: left stream cancelled after \d+ events$/, 5000);
  await server.waitForLine(/^app: left completed at/, 5000);
});

Deno.test("a client that leaves an event stream gets one access line with what was sent, and no stack trace", async () => {
  await using server = await startServer(["--workers", "1", "--app", APP]);
  const { conn } = await connect(server.port);
  await send(conn, get("/sse?id=bye&n=1000&gap=20"));
  const received = await readEvents(conn, 5);
  conn.close();
  const line = await server.waitForLine(/^GET \/sse\?id=bye&n=1000&gap=20 /, 5000);
  const match = line.match(/ 200 (\d+)B [\d.]+ms worker 0 \(client gone\)$/);
  assert.ok(match, line);
  assert.ok(Number(match[1]) >= received, `logged ${match[1]} bytes sent, the client read ${received}`);
  await server.waitForLine(/^app: bye aborted AbortError$/, 5000);
  await delay(300);
  assert.deepEqual(server.errors, [], "the server wrote to stderr");
  assert.equal(server.lines.filter((l) => l.startsWith("GET /sse?id=bye")).length, 1);
});

Deno.test("Deno.upgradeWebSocket gets a 501 that says why, and one log line", async () => {
  await using server = await startServer(["--workers", "1", "--app", APP]);
  const response = await within(
    10_000,
    "GET /ws",
    request(
      server.port,
      get(
        "/ws",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
          "Sec-WebSocket-Version: 13\r\n",
      ),
    ),
  );
  assert.equal(response.status, 501);
  assert.match(response.text, /WebSocket upgrades are not supported/);
  assert.equal(response.headers.get("connection"), "close");
  const line = await server.waitForLine(/WebSocket/, 5000);
  assert.match(line, /^WebSocket upgrade refused for GET \/ws: .*answered 501/);
  assert.equal(server.errors.length, 1, server.output());
  assert.match(await server.waitForLine(/^GET \/ws /, 5000), / 501 /);
});

Deno.test("500 event streams of 20 events 100 ms apart all finish on the default 4 workers in a few seconds", async () => {
  await using server = await startServer(["--quiet", "--app", APP]);
  const start = performance.now();
  const streams = Array.from({ length: 500 }, async () => {
    const { conn } = await connect(server.port);
    try {
      await send(conn, get("/sse?n=20&gap=100", "Connection: close\r\n"));
      const buffer = new Uint8Array(4096);
      let text = "";
      for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
        text += new TextDecoder().decode(buffer.subarray(0, n));
      }
      return (text.match(/data: /g) ?? []).length;
    } finally {
      conn.close();
    }
  });
  const counts = await within(30_000, "500 event streams", Promise.all(streams));
  const elapsed = performance.now() - start;
  assert.equal(counts.filter((n) => n === 20).length, 500, `events per stream: ${[...new Set(counts)]}`);
  // Each stream takes 1.9 s of gaps; one worker per stream would need 125 rounds of them.
  assert.ok(elapsed < 8000, `500 streams took ${elapsed.toFixed(0)} ms`);
});

Deno.test("a worker that crashes with many requests in flight: each gets an answer, the worker is replaced", async () => {
  await using server = await startServer(["--workers", "1", "--app", APP]);
  const awaiting = Array.from({ length: 10 }, () => ask(server, "/io?ms=3000"));
  await delay(200);
  const crash = ask(server, "/crash");
  const start = performance.now();
  const answers = await Promise.all([...awaiting, crash]);
  const elapsed = performance.now() - start;
  assert.ok(answers.every((r) => r.status === 500), `statuses ${answers.map((r) => r.status)}`);
  assert.ok(elapsed < 2500, `the answers took ${elapsed.toFixed(0)} ms`);
  await server.waitForLine(/^Worker 0 replaced: Worker 0 crashed: .*app crashed on purpose/, 5000);
  assert.equal(workerOf(await ask(server, "/io?ms=1")), 0);
});

Deno.test("a graceful shutdown with requests in flight on every worker lets them all complete", async () => {
  await using server = await startServer(["--workers", "2", "--quiet", "--app", APP]);
  const awaiting = Array.from({ length: 20 }, () => ask(server, "/io?ms=1000"));
  await delay(300);
  server.kill("SIGTERM");
  const answers = await Promise.all(awaiting);
  assert.ok(answers.every((r) => r.status === 200), `statuses ${answers.map((r) => r.status)}`);
  assert.deepEqual(new Set(answers.map(workerOf)), new Set([0, 1]), "the requests were not on every worker");
  assert.equal((await server.exited()).code, 0);
});
