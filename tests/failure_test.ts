// Overload and failing handlers, against a real server process whose worker module adds
// failing routes (tests/fixtures/faulty_worker.ts).
import assert from "node:assert/strict";
import { connect, get, request, send, ServerProcess, spawnServer, startServer } from "./_server.ts";

// These tests get many workers stuck on purpose; the limit that restarts the server is tested in
// tests/faults_test.ts, so here it is set out of reach.
async function startFaulty(args: string[]): Promise<ServerProcess> {
  const server = spawnServer(
    ["--port", "0", "--max-stuck-threads", "100", ...args],
    {},
    "tests/fixtures/faulty_server.ts",
  );
  await server.listening();
  return server;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sends `n` requests for `/` at once; returns how many were answered 200. */
async function workersAnswering(port: number, n: number): Promise<number> {
  const responses = await Promise.all(Array.from({ length: n }, () => request(port, get("/"))));
  return responses.filter((r) => r.status === 200).length;
}

Deno.test("a handler that throws gets 500 with a plain body, the stack goes to the log, the worker keeps serving", async () => {
  await using server = await startFaulty(["--workers", "1"]);
  const response = await request(server.port, get("/throw"));
  assert.equal(response.status, 500);
  assert.equal(response.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(response.text, "500 Internal Server Error\n");
  assert.doesNotMatch(response.text, /on purpose|at /);
  await server.waitForLine(/handler failed on purpose/);
  assert.ok(server.errors.some((l) => /faulty_worker\.ts/.test(l)), "the stack trace is not in the log");
  assert.equal((await request(server.port, get("/"))).status, 200);
  assert.ok(!server.output().includes("replaced"), "a throwing handler must not cost its worker");
});

Deno.test("a handler stuck past --handler-timeout gets 503, its worker is replaced, and the pool is back to full size", async () => {
  await using server = await startFaulty(["--workers", "2", "--handler-timeout", "1"]);
  const start = performance.now();
  const response = await request(server.port, get("/spin"));
  const elapsed = performance.now() - start;
  assert.equal(response.status, 503);
  assert.ok(elapsed >= 900 && elapsed < 4000, `answered after ${elapsed} ms`);
  await server.waitForLine(/^Worker \d replaced: Worker \d is stuck: its event loop has not turned for \d+ ms; 1 job /);
  // Both workers serve again: two /sleep-length jobs run side by side.
  const sleeps = await Promise.all([0, 1].map(() => request(server.port, get("/sleep")).catch((e) => e)));
  // /sleep takes 5 s, past the 1 s handler timeout: both time out, on two different workers at once.
  assert.deepEqual(sleeps.map((r) => r.status), [503, 503]);
  assert.equal(await workersAnswering(server.port, 4), 4);
  const replaced = server.errors.filter((l) => /replaced/.test(l));
  assert.equal(replaced.length, 3, server.output());
});

Deno.test("/sleep still works under the default handler timeout", async () => {
  await using server = await startFaulty(["--workers", "1", "--quiet"]);
  assert.equal((await request(server.port, get("/sleep"))).status, 200);
});

Deno.test("a worker that dies mid-request is replaced and its request answered 500", async () => {
  await using server = await startFaulty(["--workers", "2"]);
  const response = await request(server.port, get("/crash"));
  assert.equal(response.status, 500);
  await server.waitForLine(/^Worker \d replaced: Worker \d crashed: .*crashed on purpose/);
  const start = performance.now();
  await Promise.all([0, 1].map(() => request(server.port, get("/sleep"))));
  const elapsed = performance.now() - start;
  assert.ok(elapsed < 8000, `two /sleep took ${elapsed} ms: the pool is not back to two workers`);
});

Deno.test("when the queue is full a new request gets 503 with Retry-After at once, and queued ones are served", async () => {
  await using server = await startServer(["--workers", "1", "--queue", "1"]);
  const running = request(server.port, get("/sleep")); // occupies the only worker
  await delay(300);
  const queued = request(server.port, get("/")); // waits in the queue
  await delay(300);
  const start = performance.now();
  const refused = await request(server.port, get("/"));
  const elapsed = performance.now() - start;
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get("retry-after"), "1");
  assert.ok(elapsed < 1000, `the 503 took ${elapsed} ms`);
  assert.equal((await running).status, 200);
  assert.equal((await queued).status, 200);
});

Deno.test("over --max-connections a new connection gets a short 503 and is closed; the accept loop goes on", async () => {
  await using server = await startServer(["--workers", "1", "--max-connections", "2"]);
  const a = await connect(server.port);
  const b = await connect(server.port);
  await delay(200);
  const c = await connect(server.port);
  const refused = await c.reader.read();
  assert.equal(refused?.status, 503);
  assert.equal(refused?.headers.get("connection"), "close");
  assert.ok(await c.reader.waitClosed());
  c.conn.close();
  // The two admitted connections are served, and once one closes a new one is admitted.
  await send(a.conn, get("/"));
  assert.equal((await a.reader.read())?.status, 200);
  a.conn.close();
  await delay(300);
  assert.equal((await request(server.port, get("/"))).status, 200);
  b.conn.close();
});

Deno.test("the request body reaches the handler, by Content-Length and chunked", async () => {
  await using server = await startFaulty(["--workers", "1"]);
  const plain = await request(server.port, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
  assert.equal(plain.text, "hello");
  const chunked = await request(
    server.port,
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nT: 1\r\n\r\n",
  );
  assert.equal(chunked.text, "hello");
});

Deno.test("Expect: 100-continue gets 100 Continue before the body is sent", async () => {
  await using server = await startFaulty(["--workers", "1"]);
  const { conn, reader } = await connect(server.port);
  try {
    await send(conn, "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    const interim = await reader.read();
    assert.equal(interim?.statusLine, "HTTP/1.1 100 Continue");
    await send(conn, "body");
    const final = await reader.read();
    assert.equal(final?.status, 200);
    assert.equal(final?.text, "body");
  } finally {
    conn.close();
  }
});

Deno.test("a declared body over --max-body gets 413 without being read, and the connection closes", async () => {
  await using server = await startServer(["--workers", "1", "--max-body", "10"]);
  const { conn, reader } = await connect(server.port);
  try {
    await send(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n");
    const response = await reader.read();
    assert.equal(response?.status, 413);
    assert.ok(await reader.waitClosed());
  } finally {
    conn.close();
  }
});

Deno.test("with one request per worker, under a mixed load of crashes, timeouts, throws and plain requests every request gets its own answer", async () => {
  await using server = await startFaulty(["--workers", "2", "--concurrency", "1", "--handler-timeout", "1", "--quiet"]);
  const expected: Array<[string, number]> = [];
  // Faults among plain requests, all sent at once, each on its own connection.
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 20; j++) expected.push(["/", 200]);
    expected.push(["/crash", 500], ["/throw", 500], ["/spin", 503]);
  }
  const answers = await Promise.all(expected.map(([path]) => request(server.port, get(path))));
  assert.deepEqual(answers.map((r) => r.status), expected.map(([, status]) => status));
  // Every crashed or timed-out worker was replaced: both workers serve side by side again.
  const start = performance.now();
  await Promise.all([0, 1].map(() => request(server.port, get("/spin"))));
  assert.ok(performance.now() - start < 2500, "two /spin did not time out side by side");
  assert.equal(await workersAnswering(server.port, 20), 20);
});

Deno.test("with many requests per worker, under the same mixed load every request gets an answer and the faults theirs", async () => {
  await using server = await startFaulty(["--workers", "2", "--handler-timeout", "1", "--quiet"]);
  const expected: Array<[string, number]> = [];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 20; j++) expected.push(["/", 200]);
    expected.push(["/crash", 500], ["/throw", 500], ["/spin", 503]);
  }
  const start = performance.now();
  const answers = await Promise.all(expected.map(([path]) => request(server.port, get(path))));
  const elapsed = performance.now() - start;
  // A fault answers for itself; a request that shared a worker with a crash or a stuck handler
  // shares its fate (500 or 503), which is what a worker's concurrency costs. (A /crash whose
  // worker got stuck first never gets to crash.)
  const allowed: Record<string, number[]> = {
    "/": [200, 500, 503],
    "/crash": [500, 503],
    "/throw": [500],
    "/spin": [503],
  };
  for (const [i, [path]] of expected.entries()) {
    const got = answers[i].status;
    assert.ok(allowed[path].includes(got), `${path} answered ${got}`);
  }
  assert.ok(answers.filter((r) => r.status === 200).length > 0, "no plain request was answered 200");
  assert.ok(elapsed < 10_000, `the answers took ${elapsed.toFixed(0)} ms`);
  // The pool is whole again: both workers serve side by side.
  const sleeps = await Promise.all([0, 1].map(() => request(server.port, get("/spin"))));
  assert.deepEqual(sleeps.map((r) => r.status), [503, 503]);
  assert.equal(await workersAnswering(server.port, 20), 20);
});
