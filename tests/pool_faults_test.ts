// ThreadPool's guards against faults: heap limits, queue timeouts, and the threads it had to give up on.
import assert from "node:assert/strict";
import { JobTimeoutError, QueueTimeoutError, ThreadPool, WorkerStuckError } from "../pool/mod.ts";
import type { ThreadPoolOptions } from "../pool/mod.ts";
import { BYTES_CODEC } from "./fixtures/bytes_worker.ts";
import type { PoolTestJob, PoolTestResult } from "./fixtures/pool_worker.ts";
import { within } from "./_within.ts";

const WORKER = new URL("./fixtures/pool_worker.ts", import.meta.url);

function pool(size: number, options: ThreadPoolOptions<PoolTestJob, PoolTestResult> = {}) {
  return new ThreadPool<PoolTestJob, PoolTestResult>(size, WORKER, options);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("a worker past its heap limit fails its job and is replaced; the pool goes on", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", new URL("./fixtures/heap_limit_pool.ts", import.meta.url).pathname, "256"],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  });
  const { code, stdout, stderr } = await child.output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const { failure, ...rest } = JSON.parse(new TextDecoder().decode(stdout));
  // Reported at once (WorkerCrashError), or, when Deno missed it, at the job's timeout.
  assert.ok(
    failure.crash && failure.message === "Worker 0 crashed: it ran out of memory" || failure.timeout,
    JSON.stringify(failure),
  );
  assert.deepEqual(rest, {
    replaced: ["Worker 0 crashed: it ran out of memory"],
    next: [0, 2, 1],
    report: { stuckThreads: 0 },
  });
});

const BYTES_WORKER = new URL("./fixtures/bytes_worker.ts", import.meta.url);

for (const [limitMb, replacedToo] of [[256, true], [1024, false]] as const) {
  Deno.test(`a job that times out holding 200 MB of a ${limitMb} MiB heap limit ${replacedToo ? "ends" : "does not end"} its worker`, async () => {
    const replaced: string[] = [];
    await using p = new ThreadPool<Uint8Array, Uint8Array>(1, BYTES_WORKER, {
      codec: BYTES_CODEC,
      resourceLimits: { maxOldGenerationSizeMb: limitMb },
      onWorkerReplaced: (_id, reason) => replaced.push(reason.message),
    });
    // A job whose first byte is 251 keeps 200 MB and never ends: past two thirds of 256 MiB, under 1024.
    await assert.rejects(within(10_000, "job", p.execute(new Uint8Array([251]), { timeout: 3000 })), JobTimeoutError);
    const deadline = performance.now() + 2000;
    while (replaced.length === 0 && performance.now() < deadline) await delay(20);
    assert.deepEqual(replaced, replacedToo ? ["Worker 0 crashed: it ran out of memory"] : []);
    assert.deepEqual([...await within(5000, "next job", p.execute(new Uint8Array([1, 2])))], [0, 2, 1]);
  });
}

Deno.test("a job that waits for a worker longer than its queueTimeout rejects with QueueTimeoutError and never runs", async () => {
  await using p = pool(1);
  const busy = p.execute({ op: "sleep", ms: 1500 });
  await delay(100);
  const start = performance.now();
  const late = p.execute({ op: "double", n: 1 }, { queueTimeout: 300 });
  const inTime = p.execute({ op: "double", n: 2 }, { queueTimeout: 5000 });
  await assert.rejects(within(5000, "late job", late), (error: unknown) => {
    assert.ok(error instanceof QueueTimeoutError);
    assert.equal(error.timeout, 300);
    return true;
  });
  const waited = performance.now() - start;
  assert.ok(waited >= 290 && waited < 1200, `rejected after ${waited.toFixed(0)} ms`);
  // The one whose limit was not reached runs once the worker is free.
  assert.equal((await within(5000, "job in time", inTime)).value, 4);
  await busy;
});

Deno.test("a worker found stuck counts in stuckThreads, and close() reports it", async () => {
  const replaced: Error[] = [];
  const p = pool(1, { onWorkerReplaced: (_id, reason) => replaced.push(reason) });
  assert.equal(p.stuckThreads, 0);
  // Blocks its thread for 1.5 s, past its 200 ms timeout: the pool gives up on the thread.
  await assert.rejects(p.execute({ op: "sleep", ms: 1500 }, { timeout: 200 }), JobTimeoutError);
  const deadline = performance.now() + 5000;
  while (replaced.length === 0 && performance.now() < deadline) await delay(20);
  assert.ok(replaced[0] instanceof WorkerStuckError, String(replaced[0]));
  assert.equal(replaced[0].stuckThreads, 1);
  assert.equal(p.stuckThreads, 1);
  assert.equal((await p.execute({ op: "double", n: 3 })).value, 6);
  assert.deepEqual(await within(5000, "close", p.close()), { stuckThreads: 1 });
});

Deno.test("close() resolves even when a worker's thread is blocked while idle, and counts that thread", async () => {
  const p = pool(2);
  // Answers at once, then blocks its thread for 2.5 s from a timer: it cannot confirm that it stopped.
  await p.execute({ op: "block-later", delay: 0, ms: 2500 });
  await delay(50);
  const start = performance.now();
  const report = await within(5000, "close", p.close());
  assert.ok(performance.now() - start < 2400, `close took ${(performance.now() - start).toFixed(0)} ms`);
  assert.deepEqual(report, { stuckThreads: 1 });
});

Deno.test("close() of a pool with nothing stuck reports no stuck thread", async () => {
  const p = pool(2);
  await Promise.all([1, 2, 3].map((n) => p.execute({ op: "double", n })));
  assert.deepEqual(await within(5000, "close", p.close()), { stuckThreads: 0 });
});
