// ThreadPool with several jobs in flight per worker (`concurrency`), against real workers
// (tests/fixtures/pool_worker.ts). Timing is asserted with wide margins.
import assert from "node:assert/strict";
import {
  JobTimeoutError,
  MAX_CONCURRENCY,
  ThreadPool,
  type ThreadPoolOptions,
  WorkerCrashError,
  WorkerStuckError,
} from "../pool/mod.ts";
import type { PoolTestJob, PoolTestResult } from "./fixtures/pool_worker.ts";
import { within } from "./_within.ts";

const WORKER = new URL("./fixtures/pool_worker.ts", import.meta.url);

// The longest any job here may take to settle: a pool that never runs it fails the test.
const JOB_LIMIT_MS = 15_000;

// A pool whose execute() is bounded by JOB_LIMIT_MS, and whose ready is too.
function pool(size: number, options: ThreadPoolOptions<PoolTestJob, PoolTestResult> = {}) {
  const p = new ThreadPool<PoolTestJob, PoolTestResult>(size, WORKER, options);
  const execute = p.execute.bind(p);
  p.execute = (job, opts) => within(JOB_LIMIT_MS, `job ${JSON.stringify(job)}`, execute(job, opts));
  const ready = p.ready;
  Object.defineProperty(p, "ready", { get: () => within(JOB_LIMIT_MS, "pool.ready", ready) });
  const close = p.close.bind(p);
  p.close = () => within(JOB_LIMIT_MS, "pool.close()", close());
  p[Symbol.asyncDispose] = async () => void await p.close();
  return p;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await work();
  return [value, performance.now() - start];
}

Deno.test("new ThreadPool() takes concurrency from 1 to MAX_CONCURRENCY and rejects 0, one past the top, and fractions", async () => {
  for (const concurrency of [0, MAX_CONCURRENCY + 1, 1.5, NaN]) {
    assert.throws(() => pool(1, { concurrency }), (error: unknown) => {
      assert.ok(error instanceof RangeError);
      assert.equal(
        error.message,
        `Cannot create pool: concurrency must be an integer from 1 to ${MAX_CONCURRENCY}, got ${concurrency}`,
      );
      return true;
    });
  }
  for (const concurrency of [1, MAX_CONCURRENCY]) {
    await using p = pool(1, { concurrency });
    assert.equal(p.concurrency, concurrency);
    assert.equal((await p.execute({ op: "double", n: 2 })).value, 4);
  }
});

Deno.test("a worker with concurrency 50 runs 50 awaiting jobs at once: they take about one await, not fifty", async () => {
  await using p = pool(1, { concurrency: 50 });
  await p.ready;
  const [results, elapsed] = await timed(() =>
    Promise.all(Array.from({ length: 50 }, () => p.execute({ op: "wait", ms: 300 })))
  );
  assert.ok(results.every((r) => r.workerId === 0));
  // One after another they would take 15 s.
  assert.ok(elapsed < 2000, `50 jobs awaiting 300 ms each took ${elapsed.toFixed(0)} ms on one worker`);
});

Deno.test("a worker runs at most `concurrency` jobs at once: N fit in one round, N + 1 take two", async () => {
  await using p = pool(1, { concurrency: 3 });
  await p.ready;
  const round = (count: number) =>
    timed(() => Promise.all(Array.from({ length: count }, () => p.execute({ op: "wait", ms: 400 }))));
  const [, three] = await round(3);
  assert.ok(three < 750, `3 jobs with concurrency 3 took ${three.toFixed(0)} ms`);
  const [, four] = await round(4);
  assert.ok(four >= 780 && four < 2000, `4 jobs with concurrency 3 took ${four.toFixed(0)} ms, not two rounds`);
});

Deno.test("with concurrency 1 a worker runs one job at a time, as a thread does in the book", async () => {
  await using p = pool(1);
  await p.ready;
  const [, elapsed] = await timed(() => Promise.all([0, 1].map(() => p.execute({ op: "wait", ms: 300 }))));
  assert.ok(elapsed >= 580, `two 300 ms jobs on one worker of concurrency 1 took ${elapsed.toFixed(0)} ms`);
});

Deno.test("an idle worker gets a job before a worker that already runs one", async () => {
  await using p = pool(2, { concurrency: 8 });
  await p.ready;
  const long = p.execute({ op: "wait", ms: 1500 });
  await delay(200);
  const others: PoolTestResult[] = [];
  // One at a time, each while the long job is in flight and the other worker idle.
  for (let i = 0; i < 5; i++) others.push(await p.execute({ op: "sleep", ms: 20 }));
  const busy = (await long).workerId;
  assert.ok(
    others.every((r) => r.workerId !== busy),
    `jobs went to the busy worker ${busy}: ${JSON.stringify(others)}`,
  );
});

Deno.test("two jobs queued at once go to two idle workers, not both to the first one woken", async () => {
  await using p = pool(2, { concurrency: 8 });
  await p.ready;
  for (let round = 0; round < 10; round++) {
    // Both workers park idle; then both jobs are queued in one turn of the event loop.
    await delay(100);
    const results = await Promise.all([0, 1].map(() => p.execute({ op: "wait", ms: 200 })));
    assert.notEqual(results[0].workerId, results[1].workerId, `round ${round}: both jobs on one worker`);
  }
});

Deno.test("awaiting jobs spread over idle workers instead of piling on the first", async () => {
  await using p = pool(4, { concurrency: 16 });
  await p.ready;
  await delay(100);
  const results = await Promise.all(Array.from({ length: 8 }, () => p.execute({ op: "wait", ms: 300 })));
  const used = new Set(results.map((r) => r.workerId));
  assert.ok(used.size >= 3, `8 jobs went to workers ${[...used]} of 4`);
});

Deno.test("a job that blocks its thread holds only its worker: the other workers keep taking jobs", async () => {
  await using p = pool(2, { concurrency: 8 });
  await p.ready;
  const blocker = p.execute({ op: "sleep", ms: 2000 });
  await delay(100);
  const [quick, elapsed] = await timed(() =>
    Promise.all(Array.from({ length: 20 }, () => p.execute({ op: "wait", ms: 50 })))
  );
  const blocked = (await blocker).workerId;
  assert.ok(quick.every((r) => r.workerId !== blocked), "a job went to the blocked worker");
  assert.ok(elapsed < 1500, `20 jobs waited ${elapsed.toFixed(0)} ms behind a blocked worker`);
});

Deno.test("jobs already in flight on a worker whose thread then blocks wait for it: what sharing a worker costs", async () => {
  await using p = pool(1, { concurrency: 4 });
  await p.ready;
  const start = performance.now();
  const awaiting = p.execute({ op: "wait", ms: 100 });
  await delay(20);
  const blocker = p.execute({ op: "sleep", ms: 800 });
  await awaiting;
  const elapsed = performance.now() - start;
  await blocker;
  assert.ok(elapsed >= 700, `the 100 ms job ended after ${elapsed.toFixed(0)} ms, not behind the blocked thread`);
});

Deno.test("a job past its timeout while awaiting rejects at once and its signal aborts; its worker is kept", async () => {
  const replaced: Error[] = [];
  await using p = pool(1, { concurrency: 4, onWorkerReplaced: (_id, reason) => replaced.push(reason) });
  await p.ready;
  const other = p.execute({ op: "wait", ms: 1200 });
  const [outcome, elapsed] = await timed(() =>
    p.execute({ op: "until-aborted" }, { timeout: 300 }).then(() => undefined, (error) => error)
  );
  assert.ok(outcome instanceof JobTimeoutError, `got ${outcome}`);
  assert.ok(elapsed >= 280 && elapsed < 1000, `rejected after ${elapsed.toFixed(0)} ms`);
  assert.equal((await other).value, 1200, "the other job on the same worker went on");
  const aborts = await p.execute({ op: "aborts" });
  assert.equal(aborts.note, "TimeoutError");
  assert.deepEqual(replaced, []);
});

Deno.test("a worker whose thread is stuck past the timeout is replaced, and every job on it fails at once", async () => {
  const replaced: Error[] = [];
  await using p = pool(1, { concurrency: 4, onWorkerReplaced: (_id, reason) => replaced.push(reason) });
  await p.ready;
  const start = performance.now();
  const awaiting = p.execute({ op: "wait", ms: 3000 }, { timeout: 1000 }).catch((error) => error);
  await delay(50);
  const stuck = p.execute({ op: "sleep", ms: 20_000 }, { timeout: 1000 }).catch((error) => error);
  const outcomes = await Promise.all([awaiting, stuck]);
  const elapsed = performance.now() - start;
  assert.ok(outcomes.every((error) => error instanceof JobTimeoutError), `got ${outcomes}`);
  assert.ok(elapsed < 2500, `the jobs failed after ${elapsed.toFixed(0)} ms`);
  assert.equal(replaced.length, 1);
  assert.ok(replaced[0] instanceof WorkerStuckError);
  // The replacement serves at once, long before the stuck thread's 20 s.
  const [next, wait] = await timed(() => p.execute({ op: "double", n: 4 }));
  assert.equal(next.value, 8);
  assert.ok(wait < 3000, `the next job waited ${wait.toFixed(0)} ms`);
});

Deno.test("a thread that blocks for less than the timeout is not taken for stuck", async () => {
  const replaced: Error[] = [];
  await using p = pool(1, { concurrency: 4, onWorkerReplaced: (_id, reason) => replaced.push(reason) });
  await p.ready;
  const awaiting = p.execute({ op: "wait", ms: 100 }, { timeout: 2000 });
  const blocking = p.execute({ op: "sleep", ms: 1000 }, { timeout: 2000 });
  assert.deepEqual((await Promise.all([awaiting, blocking])).map((r) => r.value), [100, 1000]);
  assert.deepEqual(replaced, []);
});

Deno.test("cancelling a running job aborts its signal, and it settles as it ends", async () => {
  await using p = pool(1, { concurrency: 2 });
  await p.ready;
  const controller = new AbortController();
  const running = p.execute({ op: "until-aborted" }, { signal: controller.signal });
  await delay(200);
  controller.abort();
  assert.equal((await running).note, "AbortError");
});

Deno.test("progress.flush() resolves only once the caller has acknowledged everything emitted", async () => {
  await using p = pool(1, { concurrency: 2 });
  const acks: Array<() => void> = [];
  let settled = false;
  const result = p.execute({ op: "parts-then-flush", count: 3 }, { onProgress: (_data, ack) => acks.push(ack) });
  result.then(() => settled = true);
  while (acks.length < 3) await delay(10);
  await delay(200);
  assert.equal(settled, false, "the job finished before its messages were acknowledged");
  for (const ack of acks) ack();
  assert.equal((await result).note, "flushed");
});

Deno.test("a worker that crashes with many jobs in flight fails each of them, is replaced, and nothing hangs", async () => {
  const replaced: Error[] = [];
  await using p = pool(1, { concurrency: 10, onWorkerReplaced: (_id, reason) => replaced.push(reason) });
  await p.ready;
  const waits = Array.from({ length: 9 }, () => p.execute({ op: "wait", ms: 3000 }).catch((error) => error));
  await delay(100);
  const crash = p.execute({ op: "crash" }).catch((error) => error);
  const [outcomes, elapsed] = await timed(() => Promise.all([...waits, crash]));
  assert.ok(outcomes.every((error) => error instanceof WorkerCrashError), `got ${outcomes}`);
  assert.ok(elapsed < 2000, `the jobs failed after ${elapsed.toFixed(0)} ms`);
  assert.equal(replaced.length, 1);
  assert.equal((await p.execute({ op: "double", n: 5 })).value, 10);
});

Deno.test("close() lets the jobs in flight on every worker finish, then stops the workers", async () => {
  const stopped: number[] = [];
  const p = pool(2, { concurrency: 5, onWorkerStop: (id) => stopped.push(id) });
  await p.ready;
  const jobs = Array.from({ length: 10 }, () => p.execute({ op: "wait", ms: 300 }));
  await delay(50);
  await p.close();
  const results = await Promise.all(jobs);
  assert.equal(results.length, 10);
  assert.deepEqual(new Set(results.map((r) => r.workerId)), new Set([0, 1]), "the jobs were not spread");
  assert.deepEqual(stopped, [0, 1]);
});
