import assert from "node:assert/strict";
import { JobTimeoutError, ThreadPool, WorkerCrashError, WorkerStuckError } from "../pool/mod.ts";
import type { PoolTestJob, PoolTestResult } from "./fixtures/pool_worker.ts";

const WORKER = new URL("./fixtures/pool_worker.ts", import.meta.url);

function pool(size: number, options = {}) {
  return new ThreadPool<PoolTestJob, PoolTestResult>(size, WORKER, options);
}

Deno.test("new ThreadPool() rejects a size that is not a positive integer with RangeError", () => {
  for (const size of [0, -1, 2.5, NaN, Infinity]) {
    assert.throws(() => pool(size), (error: unknown) => {
      assert.ok(error instanceof RangeError);
      assert.equal(error.message, `Cannot create pool: size must be a positive integer, got ${size}`);
      return true;
    });
  }
});

Deno.test("new ThreadPool() rejects a url that is not a URL or string with TypeError", () => {
  assert.throws(() => new ThreadPool(1, 42 as unknown as string), TypeError);
});

Deno.test("ThreadPool.execute() returns each job's result", async () => {
  await using p = pool(2);
  const results = await Promise.all([1, 2, 3, 4, 5].map((n) => p.execute({ op: "double", n })));
  assert.deepEqual(results.map((r) => r.value), [2, 4, 6, 8, 10]);
  assert.equal(p.size, 2);
});

Deno.test("ThreadPool.execute() rejects with the job's error and the worker keeps serving", async () => {
  await using p = pool(1);
  await assert.rejects(p.execute({ op: "throw", message: "bad input" }), (error: unknown) => {
    assert.ok(error instanceof Error);
    assert.equal(error.name, "TypeError");
    assert.equal(error.message, "bad input");
    return true;
  });
  assert.equal((await p.execute({ op: "double", n: 4 })).value, 8);
});

Deno.test("ThreadPool runs jobs on idle workers in parallel", async () => {
  await using p = pool(3);
  await p.ready;
  const start = performance.now();
  const results = await Promise.all([0, 1, 2].map(() => p.execute({ op: "sleep", ms: 400 })));
  const elapsed = performance.now() - start;
  assert.deepEqual(new Set(results.map((r) => r.workerId)), new Set([0, 1, 2]));
  // Run one after another they would take 1200 ms.
  assert.ok(elapsed < 1000, `three 400 ms jobs on three workers took ${elapsed} ms`);
});

Deno.test("ThreadPool never queues a job behind a busy worker while another is idle", async () => {
  await using p = pool(2);
  await p.ready;
  const slow = p.execute({ op: "sleep", ms: 1500 });
  const start = performance.now();
  const quick = [];
  for (let n = 0; n < 6; n++) quick.push(await p.execute({ op: "double", n }));
  const elapsed = performance.now() - start;
  const slowWorker = (await slow).workerId;
  assert.ok(quick.every((r) => r.workerId !== slowWorker), "a quick job went to the sleeping worker");
  assert.ok(elapsed < 1000, `quick jobs waited ${elapsed} ms behind the sleeping worker`);
});

Deno.test("ThreadPool wakes a second worker for jobs queued in one burst behind a slow job", async () => {
  await using p = pool(2);
  await p.ready;
  // Let both workers go to sleep, then queue everything in one turn of the event loop.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const start = performance.now();
  const slow = p.execute({ op: "sleep", ms: 1500 });
  const quick = await Promise.all([0, 1, 2, 3, 4].map((n) => p.execute({ op: "double", n })));
  const elapsed = performance.now() - start;
  const slowWorker = (await slow).workerId;
  assert.ok(quick.every((r) => r.workerId !== slowWorker), "a quick job went to the sleeping worker");
  assert.ok(elapsed < 1000, `quick jobs waited ${elapsed} ms behind the slow one`);
});

Deno.test("ThreadPool.close() finishes queued jobs, then stops every worker one by one", async () => {
  const stopped: number[] = [];
  const p = pool(2, { onWorkerStop: (id: number) => stopped.push(id) });
  const jobs = [0, 1, 2, 3].map(() => p.execute({ op: "sleep", ms: 100 }));
  await p.close();
  assert.equal((await Promise.all(jobs)).length, 4);
  assert.deepEqual(stopped, [0, 1]);
  await assert.rejects(p.execute({ op: "double", n: 1 }), /pool is closed/);
});

Deno.test("ThreadPool closes at the end of an `await using` block", async () => {
  const stopped: number[] = [];
  {
    await using p = pool(1, { onWorkerStop: (id: number) => stopped.push(id) });
    await p.execute({ op: "double", n: 1 });
  }
  assert.deepEqual(stopped, [0]);
});

Deno.test("ThreadPool replaces a worker that crashes and rejects its job", async () => {
  const replaced: number[] = [];
  await using p = pool(2, { onWorkerReplaced: (id: number) => replaced.push(id) });
  await p.ready;
  await assert.rejects(p.execute({ op: "crash" }), WorkerCrashError);
  assert.equal(replaced.length, 1);
  const results = await Promise.all([0, 1].map(() => p.execute({ op: "sleep", ms: 200 })));
  assert.deepEqual(new Set(results.map((r) => r.workerId)), new Set([0, 1]));
  assert.equal(p.readyWorkers, 2);
});

Deno.test("ThreadPool.execute() with a timeout replaces the worker that runs too long", async () => {
  await using p = pool(1);
  await assert.rejects(p.execute({ op: "sleep", ms: 5000 }, { timeout: 200 }), JobTimeoutError);
  assert.equal((await p.execute({ op: "double", n: 21 })).value, 42);
  assert.equal(p.readyWorkers, 1);
});

Deno.test("ThreadPool.ready rejects when a worker module cannot load", async () => {
  const broken = `data:text/javascript,${encodeURIComponent("throw new Error('no start');")}`;
  const p = new ThreadPool(1, broken);
  await assert.rejects(p.ready, /Cannot start worker 0/);
  await assert.rejects(p.execute(1), /Cannot start worker 0/);
  await p.close();
});

Deno.test("ThreadPool.execute() delivers a job's progress in order before its result, paced by acks", async () => {
  await using p = pool(1);
  const seen: unknown[] = [];
  let acks = 0;
  const pending: Array<() => void> = [];
  const result = p.execute({ op: "parts", count: 20 }, {
    onProgress: (data, ack) => {
      seen.push(data);
      pending.push(ack);
    },
  });
  // Without acks the worker stops after a window of messages.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok(seen.length > 0 && seen.length < 20, `${seen.length} parts arrived without any ack`);
  const drain = setInterval(() => {
    while (pending.length) {
      pending.shift()!();
      acks++;
    }
  }, 5);
  assert.equal((await result).value, 20);
  clearInterval(drain);
  assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i));
  assert.ok(acks >= 12);
});

Deno.test("ThreadPool.execute() with a signal drops a queued job and stops a running job's progress", async () => {
  await using p = pool(1);
  const running = new AbortController();
  const parts: unknown[] = [];
  const streaming = p.execute({ op: "parts", count: 1_000_000 }, {
    signal: running.signal,
    onProgress: (data, ack) => {
      parts.push(data);
      ack();
      if (parts.length === 5) running.abort();
    },
  });
  const queued = new AbortController();
  const waiting = p.execute({ op: "double", n: 1 }, { signal: queued.signal });
  queued.abort(new Error("not wanted"));
  await assert.rejects(waiting, /not wanted/);
  await assert.rejects(streaming, (error: unknown) => (error as Error).name === "AbortError");
  assert.ok(parts.length < 1000, `${parts.length} parts after the abort`);
  // The worker is free again.
  assert.equal((await p.execute({ op: "double", n: 2 })).value, 4);
});

Deno.test("ThreadPool.execute() rejects with the error an onProgress callback throws, and the pool goes on", async () => {
  await using p = pool(1);
  const failed = p.execute({ op: "parts", count: 1000 }, {
    onProgress: () => {
      throw new Error("consumer bug");
    },
  });
  await assert.rejects(failed, /consumer bug/);
  assert.equal((await p.execute({ op: "double", n: 3 })).value, 6);
});

Deno.test("ThreadPool.execute() still applies its timeout to a job whose onProgress threw", async () => {
  const replaced: Error[] = [];
  await using p = pool(1, { onWorkerReplaced: (_id: number, reason: Error) => replaced.push(reason) });
  const started = performance.now();
  // The job ignores being cancelled and blocks its worker for 20 s.
  const failed = p.execute({ op: "emit-then-block", ms: 20_000 }, {
    timeout: 300,
    onProgress: () => {
      throw new Error("consumer bug");
    },
  });
  await assert.rejects(failed, /consumer bug/);
  // The worker is replaced once the timeout passes, and the next job runs long before 20 s.
  assert.equal((await p.execute({ op: "double", n: 3 })).value, 6);
  assert.ok(performance.now() - started < 10_000, "the next job waited for the blocked job");
  assert.equal(replaced.length, 1);
  assert.ok(replaced[0] instanceof WorkerStuckError);
});

Deno.test("ThreadPool starts a worker module that awaits at its top level before runJobs", async () => {
  await using p = new ThreadPool<number, number>(2, new URL("./fixtures/late_worker.ts", import.meta.url));
  await p.ready;
  assert.deepEqual(await Promise.all([p.execute(1), p.execute(2)]), [2, 3]);
});

Deno.test("ThreadPool keeps the timeout of a failed job even when its consumer acknowledges late", async () => {
  await using p = pool(1);
  let firstAck: (() => void) | undefined;
  const started = performance.now();
  const failed = p.execute({ op: "emit-then-block", ms: 20_000 }, {
    timeout: 300,
    onProgress: (_data, ack) => {
      if (!firstAck) {
        firstAck = ack; // the first message is held
        return;
      }
      throw new Error("consumer bug");
    },
  });
  await assert.rejects(failed, /consumer bug/);
  firstAck!();
  assert.equal((await p.execute({ op: "double", n: 3 })).value, 6);
  assert.ok(performance.now() - started < 10_000, "the timeout never fired");
});

Deno.test("ThreadPool.close() does not wait for a job that already failed because its onProgress threw", async () => {
  const p = pool(1);
  const failed = p.execute({ op: "emit-then-block", ms: 20_000 }, {
    onProgress: () => {
      throw new Error("consumer bug");
    },
  });
  await assert.rejects(failed, /consumer bug/);
  const started = performance.now();
  await p.close();
  // The worker is asked to stop, and terminated a second later since it does not answer.
  assert.ok(performance.now() - started < 5000, "close() waited for the failed job");
});

Deno.test("ThreadPool wakes another worker when the one it woke has its thread held outside a job", async () => {
  await using p = pool(2);
  await p.ready;
  await new Promise((resolve) => setTimeout(resolve, 100));
  // One worker answers at once but holds its thread for 3 s from 100 ms on; the other sleeps 50 ms.
  await Promise.all([
    p.execute({ op: "block-later", delay: 100, ms: 3000 }),
    p.execute({ op: "sleep", ms: 50 }),
  ]);
  await new Promise((resolve) => setTimeout(resolve, 250));
  // The wake for this job goes to the worker that slept first: the held one.
  const started = performance.now();
  assert.equal((await p.execute({ op: "double", n: 1 })).value, 2);
  const elapsed = performance.now() - started;
  assert.ok(elapsed < 1500, `the job waited ${elapsed} ms while a worker was free`);
  // Let the held thread finish before the pool closes.
  await new Promise((resolve) => setTimeout(resolve, 3000));
});

Deno.test("ThreadPool.ready rejects, naming the mistake, when a worker module calls runJobs twice", async () => {
  await using p = new ThreadPool<number, number>(1, new URL("./fixtures/twice_worker.ts", import.meta.url));
  await assert.rejects(p.ready, /runJobs was already called/);
});

Deno.test("new ThreadPool() throws a DataCloneError at once for data that cannot be sent to a worker", () => {
  assert.throws(() => pool(1, { data: { f: () => {} } }), (error: unknown) => {
    assert.ok(error instanceof DOMException);
    assert.equal(error.name, "DataCloneError");
    return true;
  });
});

Deno.test("a worker that finishes a job takes the next queued one at once: 20 queued jobs on one worker take milliseconds", async () => {
  await using p = pool(1);
  await p.execute({ op: "double", n: 0 });
  const start = performance.now();
  const results = await Promise.all(Array.from({ length: 20 }, (_, n) => p.execute({ op: "double", n })));
  const elapsed = performance.now() - start;
  assert.deepEqual(results.map((r) => r.value), Array.from({ length: 20 }, (_, n) => n * 2));
  // About 20 ms here; a worker that parks between jobs instead of claiming the next takes seconds.
  assert.ok(elapsed < 600, `20 queued jobs took ${elapsed.toFixed(0)} ms`);
});
