// Faults that used to take the server down, each against a real server process: handlers that
// break their worker (tests/fixtures/apps/faults.ts) while normal requests run beside them,
// clients that give up, and shutdowns under keep-alive load. Timing is asserted with wide margins.
import assert from "node:assert/strict";
import { closeWaitSockets, cpuMs, rssKiB } from "./_proc.ts";
import {
  connect,
  get,
  request,
  type Response1,
  send,
  type ServerProcess,
  spawnServer,
  startServer,
} from "./_server.ts";
import { within } from "./_within.ts";

const APP = "tests/fixtures/apps/faults.ts";
// While this file exists, the app's workers refuse to start (see the app).
const REFUSE_START = new URL("./fixtures/apps/faults.refuse", import.meta.url);

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function ask(server: ServerProcess, path: string, ms = 20_000): Promise<Response1> {
  return within(ms, `GET ${path}`, request(server.port, get(path)));
}

/** Sends `n` requests for `/io` at once; all must be answered 200. Returns the workers that answered. */
async function normalRequests(server: ServerProcess, n = 20): Promise<Set<number>> {
  const answers = await Promise.all(Array.from({ length: n }, () => ask(server, "/io?ms=200")));
  assert.deepEqual(answers.map((r) => r.status), answers.map(() => 200), server.output());
  return new Set(answers.map((r) => (JSON.parse(r.text) as { workerId: number }).workerId));
}

/**
 * Sends the faulty request, then, once its worker has taken it, 20 normal ones: they run on the
 * other worker (or its replacement) while the fault plays out. Requests a worker already held
 * when it died share its fate; that is what a worker's concurrency costs, and not what this checks.
 */
async function faultBesideNormal(server: ServerProcess, path: string, ms?: number): Promise<Response1> {
  const fault = ask(server, path, ms);
  await delay(150);
  const [answer] = await Promise.all([fault, normalRequests(server, 20)]);
  return answer;
}

/** Polls until `check()` holds, for at most `ms`; fails with `what` otherwise. */
async function eventually(ms: number, what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (!await check()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await delay(100);
  }
}

/** The CPU the process uses over `ms` while it serves nothing, in milliseconds per second. */
async function idleCpu(pid: number, ms = 1000): Promise<number> {
  const before = await cpuMs(pid);
  await delay(ms);
  return (await cpuMs(pid) - before) * 1000 / ms;
}

/** Lines on stderr that look like a stack trace: a fault gets one line, never a trace. */
function stackLines(server: ServerProcess): string[] {
  return server.errors.filter((line) => /^\s+at /.test(line));
}

/** Both of `--workers 2` answer, side by side: the pool is back to its size. */
async function poolIsWhole(server: ServerProcess): Promise<void> {
  // Two requests that block their worker's thread for a second each: both workers, at the same time.
  const start = performance.now();
  const answers = await Promise.all([0, 1].map(() => ask(server, "/sleep?ms=1000")));
  const elapsed = performance.now() - start;
  assert.deepEqual(answers.map((r) => r.status), [200, 200], server.output());
  const workers = answers.map((r) => (JSON.parse(r.text) as { workerId: number }).workerId).sort();
  assert.deepEqual(workers, [0, 1], `not both workers answered:\n${server.output()}`);
  assert.ok(elapsed < 1900, `two blocking requests took ${elapsed.toFixed(0)} ms: they did not run side by side`);
}

Deno.test("a handler that allocates without end costs only its worker: 500 for it, 20 requests beside it succeed, RSS comes back", async () => {
  const args = ["--workers", "2", "--worker-memory", "256", "--handler-timeout", "3", "--app", APP];
  await using server = await startServer(args);
  const pid = server.child.pid;
  await normalRequests(server, 4);
  const rssBefore = await rssKiB(pid);
  const answer = await faultBesideNormal(server, "/bomb");
  // 500 at once; 503 at the handler timeout when Deno missed reporting the worker's end (then the
  // worker, most of its heap full, ends itself: pool/run_jobs.ts).
  assert.ok(answer.status === 500 || answer.status === 503, `${answer.status}`);
  const line = await server.waitForLine(/replaced/);
  assert.match(line, /^Worker \d replaced: Worker \d crashed: it ran out of memory$/);
  assert.equal(server.errors.filter((l) => /replaced/.test(l)).length, 1, server.output());
  assert.deepEqual(stackLines(server), []);
  await poolIsWhole(server);
  // The dead worker's heap is given back: the process is near where it was, far from the 256 MiB it filled.
  await eventually(10_000, "RSS back to normal", async () => (await rssKiB(pid)) < rssBefore + 128 * 1024);
  assert.ok(await idleCpu(pid) < 300, "the process keeps using CPU after the fault");
});

Deno.test("--worker-memory at its least (64) is taken and holds, one less is refused", async () => {
  const args = ["--workers", "1", "--worker-memory", "64", "--handler-timeout", "3", "--app", APP];
  await using server = await startServer(args);
  assert.match(server.lines[0], /up to 64 MiB of heap each$/);
  assert.equal((await ask(server, "/io")).status, 200);
  // The limit holds: the first 100 MB the bomb asks for is past it. (503 at the handler timeout
  // when Deno missed reporting the worker's end; it then holds nothing, and serves on.)
  const start = performance.now();
  const answer = await ask(server, "/bomb");
  assert.ok(performance.now() - start < 5000, `the bomb ran ${(performance.now() - start).toFixed(0)} ms`);
  if (answer.status === 500) await server.waitForLine(/crashed: it ran out of memory$/);
  else assert.equal(answer.status, 503);
  assert.equal((await ask(server, "/io")).status, 200);
  await using refused = spawnServer(["--port", "0", "--worker-memory", "63"]);
  assert.equal((await refused.exited()).code, 2);
  assert.match(refused.errors.join("\n"), /--worker-memory/);
});

Deno.test("a worker that calls Deno.exit mid-request is seen at once: 500 for its request, 20 beside it succeed, one line", async () => {
  await using server = await startServer(["--workers", "2", "--app", APP]);
  const start = performance.now();
  const answer = await faultBesideNormal(server, "/exit-now");
  assert.equal(answer.status, 500);
  // Not at a timeout (30 s by default): at once.
  assert.ok(performance.now() - start < 5000, `answered after ${performance.now() - start} ms`);
  const line = await server.waitForLine(/replaced/);
  assert.match(line, /^Worker \d replaced: Worker \d crashed: its thread exited with code 1$/);
  assert.deepEqual(stackLines(server), []);
  await poolIsWhole(server);
});

for (
  const [fault, path, cause] of [
    ["calls Deno.exit while idle", "/exit-later?ms=300", /its thread exited with code 1$/],
    ["calls self.close() while idle", "/close-later?ms=300", /its thread exited with code 0$/],
    [
      "throws from a timer, outside any request",
      "/throw-later?ms=300",
      /crashed: app failed on purpose, outside any request$/,
    ],
  ] as const
) {
  Deno.test(`a worker whose handler ${fault} is replaced at once, with one line and no stack trace`, async () => {
    await using server = await startServer(["--workers", "2", "--app", APP]);
    for (let round = 1; round <= 4; round++) {
      // Four times, more than the workers: without replacements the pool would be empty.
      assert.equal((await ask(server, path)).status, 200);
      await eventually(
        5000,
        `replacement ${round}`,
        () => server.errors.filter((l) => /replaced/.test(l)).length === round,
      );
      await normalRequests(server, 20);
    }
    for (const line of server.errors.filter((l) => /replaced/.test(l))) assert.match(line, cause);
    assert.deepEqual(stackLines(server), []);
    await poolIsWhole(server);
    // Shutdown does not wait for a worker that is gone.
    server.kill("SIGTERM");
    assert.equal((await server.exited()).code, 0, server.output());
  });
}

Deno.test("a worker that calls self.close() mid-request: 500 at once, the pool is whole", async () => {
  await using server = await startServer(["--workers", "2", "--app", APP]);
  const answer = await faultBesideNormal(server, "/close-now", 5000);
  assert.equal(answer.status, 500);
  await server.waitForLine(/^Worker \d replaced: Worker \d crashed: its thread exited with code 0$/);
  await poolIsWhole(server);
});

Deno.test("a handler that spins for good: 503 at the timeout, one line counting the stuck thread, 20 requests beside it succeed", async () => {
  await using server = await startServer([
    "--workers",
    "2",
    "--handler-timeout",
    "1",
    "--max-stuck-threads",
    "2",
    "--app",
    APP,
  ]);
  const pid = server.child.pid;
  const answer = await faultBesideNormal(server, "/spin");
  assert.equal(answer.status, 503);
  const line = await server.waitForLine(/replaced/);
  assert.match(
    line,
    /^Worker \d replaced: Worker \d is stuck: .*; its thread cannot be stopped \(stuck threads: 1; at 2 the server drains and exits 75\)$/,
  );
  await poolIsWhole(server);
  // The thread Deno cannot stop spins on: about one core, which the log line owned up to.
  const cpu = await idleCpu(pid);
  assert.ok(cpu > 500 && cpu < 1500, `the process uses ${cpu} ms of CPU a second`);
  assert.deepEqual(stackLines(server), []);
});

Deno.test("at --max-stuck-threads the server drains what is in flight and exits 75; one fewer keeps it serving", async () => {
  await using server = await startServer([
    "--workers",
    "2",
    "--handler-timeout",
    "2",
    "--max-stuck-threads",
    "2",
    "--app",
    APP,
  ]);
  assert.equal((await ask(server, "/spin")).status, 503);
  await server.waitForLine(/stuck threads: 1; at 2/);
  // One stuck thread, one under the limit: the server goes on.
  await normalRequests(server, 20);
  // A request in flight on the other worker when the limit is reached is answered, then the process exits 75.
  const inFlight = ask(server, "/io?ms=1500");
  await delay(100);
  assert.equal((await ask(server, "/spin")).status, 503);
  assert.equal((await inFlight).status, 200);
  assert.equal((await server.exited()).code, 75, server.output());
  assert.ok(
    server.errors.some((l) => /^2 stuck worker threads, the limit: draining, then exiting with status 75/.test(l)),
  );
});

Deno.test("replacements that keep failing to start back off, say so, and a waiting request gets 503 instead of waiting for ever", async () => {
  await Deno.remove(REFUSE_START).catch(() => {});
  await using server = await startServer(["--workers", "1", "--handler-timeout", "1", "--app", APP]);
  try {
    await Deno.writeTextFile(REFUSE_START, "");
    assert.equal((await ask(server, "/exit-now")).status, 500);
    // No worker now; the request waits for the queue's limit (10 s, the least it is) and gets 503.
    const start = performance.now();
    const waiting = await ask(server, "/io", 20_000);
    const waited = performance.now() - start;
    assert.equal(waiting.status, 503);
    assert.equal(waiting.headers.get("retry-after"), "1");
    assert.ok(waited >= 9000 && waited < 15_000, `answered after ${waited.toFixed(0)} ms`);
    const retries = server.errors.filter((l) =>
      /^Cannot start worker 0: .*refusing to start on purpose.*; trying again in/.test(l)
    );
    assert.deepEqual(
      retries.slice(0, 3).map((l) => l.match(/trying again in (\d+) s$/)![1]),
      ["1", "2", "4"],
      server.output(),
    );
  } finally {
    await Deno.remove(REFUSE_START).catch(() => {});
  }
  // Once it can start again (within the 8 s back-off), the pool is whole.
  await eventually(12_000, "a worker started", async () => (await ask(server, "/io")).status === 200);
});

/** Opens `n` keep-alive connections and sends `path` on each at once. */
async function crowd(server: ServerProcess, n: number, path: string, extra = ""): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < n; i += 100) {
    conns.push(
      ...await Promise.all(Array.from({ length: Math.min(100, n - i) }, async () => (await connect(server.port)).conn)),
    );
  }
  await Promise.all(conns.map((conn) => send(conn, get(path, extra))));
  return conns;
}

Deno.test("8 clients that give up on /sleep with 1 worker: the queued sleeps never run, / answers once the running one ends", async () => {
  await using server = await startServer(["--workers", "1"]);
  const start = performance.now();
  const conns = await crowd(server, 8, "/sleep");
  await delay(1000);
  for (const conn of conns) conn.close();
  const answer = await ask(server, "/");
  const elapsed = performance.now() - start;
  assert.equal(answer.status, 200);
  // The sleep already running cannot be stopped (5 s); the seven others are dropped, not run (40 s).
  assert.ok(elapsed > 4000 && elapsed < 9000, `/ answered after ${elapsed.toFixed(0)} ms`);
  await server.waitForLine(/^GET \/ 200 /);
  assert.equal(server.lines.filter((l) => /^GET \/sleep 499 0B .*\(client gone\)$/.test(l)).length, 7, server.output());
  assert.equal(await closeWaitSockets(server.port), 0);
});

for (const [kind, extra] of [["keep-alive", ""], ["Connection: close", "Connection: close\r\n"]] as const) {
  Deno.test(`600 ${kind} clients that give up on /sleep after 3 s leave no backlog and no CLOSE-WAIT socket`, async () => {
    await using server = await startServer(["--workers", "2", "--quiet"]);
    const conns = await crowd(server, 600, "/sleep", extra);
    await delay(3000);
    for (const conn of conns) conn.close();
    const start = performance.now();
    const answer = await ask(server, "/");
    const elapsed = performance.now() - start;
    assert.equal(answer.status, 200);
    // Only the two sleeps that were running hold the workers, for the 2 s they have left.
    assert.ok(elapsed < 5000, `/ answered ${elapsed.toFixed(0)} ms after the crowd left`);
    await eventually(3000, "no socket in CLOSE-WAIT", async () => await closeWaitSockets(server.port) === 0);
    // And at once from then on.
    const again = performance.now();
    assert.equal((await ask(server, "/")).status, 200);
    assert.ok(performance.now() - again < 1000);
  });
}

Deno.test("a client that pipelines 40 /sleep past the pipelining limit and leaves: what it queued is dropped", async () => {
  await using server = await startServer(["--workers", "1"]);
  const { conn } = await connect(server.port);
  await send(conn, get("/sleep").repeat(40));
  await delay(1000);
  conn.close();
  const start = performance.now();
  assert.equal((await ask(server, "/")).status, 200);
  // Not after the 15 queued behind the pipelining limit (75 s), but after the one running.
  const elapsed = performance.now() - start;
  assert.ok(elapsed < 8000, `/ answered ${elapsed.toFixed(0)} ms after the client left`);
});

/** Keep-alive clients that send one request after another, counting requests left without an answer. */
function keepAliveLoad(port: number, clients: number, path: string) {
  let stopping = false;
  const counts = { sent: 0, answered: 0, unanswered: 0, closeHeaders: 0 };
  const loops = Array.from({ length: clients }, async () => {
    const { conn, reader } = await connect(port);
    try {
      while (!stopping) {
        // A send that fails never left: the server had closed, and said so before (Connection: close).
        if (!await send(conn, get(path)).then(() => true, () => false)) return;
        counts.sent++;
        const response = await reader.read();
        if (!response) {
          counts.unanswered++;
          return;
        }
        counts.answered++;
        if (response.headers.get("connection") === "close") {
          counts.closeHeaders++;
          return;
        }
      }
    } finally {
      conn.close();
    }
  });
  return {
    counts,
    async stop() {
      stopping = true;
      await within(20_000, "keep-alive clients", Promise.all(loops));
      return counts;
    },
  };
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal} under 50 keep-alive clients: every request sent is answered, the last ones with Connection: close`, async () => {
    await using server = await startServer(["--workers", "2", "--quiet", "--app", APP]);
    const load = keepAliveLoad(server.port, 50, "/io?ms=5");
    await eventually(5000, "load running", () => load.counts.answered > 500);
    server.kill(signal);
    const status = await server.exited();
    const counts = await load.stop();
    assert.equal(status.code, 0, server.output());
    assert.equal(counts.unanswered, 0, JSON.stringify(counts));
    assert.equal(counts.closeHeaders, 50, JSON.stringify(counts));
  });
}

Deno.test("--max-requests under 50 keep-alive clients: every request sent is answered (200 or 503)", async () => {
  await using server = await startServer(["--workers", "2", "--quiet", "--max-requests", "300", "--app", APP]);
  const load = keepAliveLoad(server.port, 50, "/io?ms=5");
  const status = await server.exited();
  const counts = await load.stop();
  assert.equal(status.code, 0, server.output());
  assert.equal(counts.unanswered, 0, JSON.stringify(counts));
  assert.equal(counts.closeHeaders, 50, JSON.stringify(counts));
});
