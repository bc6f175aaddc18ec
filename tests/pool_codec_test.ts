// ThreadPool with a codec: jobs and results as bytes through the shared queue and reply rings, against real workers.
import assert from "node:assert/strict";
import { JobQueue, QUEUE_CELLS } from "../pool/_channel.ts";
import { QueueFullError, ThreadPool } from "../pool/mod.ts";
import { BYTES_CODEC, LARGE_RESULT } from "./fixtures/bytes_worker.ts";

// Deterministic bytes of a given length, different for each seed.
function bytesOf(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

Deno.test("a pool with a codec returns every result through shared memory, from many jobs on several workers", async () => {
  await using pool = new ThreadPool<Uint8Array, Uint8Array>(3, new URL("./fixtures/bytes_worker.ts", import.meta.url), {
    codec: BYTES_CODEC,
  });
  // A first byte of 0 is an ordinary job for the fixture.
  const jobs = Array.from({ length: 3000 }, (_, n) => bytesOf(n, n % 2000).fill(0, 0, 1));
  const results = await Promise.all(jobs.map((job) => pool.execute(job)));
  for (const [n, result] of results.entries()) {
    assert.ok(result[0] < 3);
    assert.deepEqual(result.subarray(1), jobs[n].toReversed(), `job ${n}`);
  }
});

Deno.test("a pool with a codec sends a job or result too large for shared memory by message", async () => {
  await using pool = new ThreadPool<Uint8Array, Uint8Array>(1, new URL("./fixtures/bytes_worker.ts", import.meta.url), {
    codec: BYTES_CODEC,
  });
  const large = bytesOf(1, JobQueue.maxInline + 1);
  large[0] = 1;
  const echoed = await pool.execute(large);
  assert.deepEqual(echoed.subarray(1), large.toReversed());
  const big = await pool.execute(new Uint8Array([255]));
  assert.equal(big.length, LARGE_RESULT);
});

Deno.test("jobs beyond the shared queue's room wait in order and all run", async () => {
  await using pool = new ThreadPool<Uint8Array, Uint8Array>(1, new URL("./fixtures/bytes_worker.ts", import.meta.url), {
    codec: BYTES_CODEC,
  });
  await pool.ready;
  // The first job holds the only worker while the rest pile up past the queue's cells.
  const blocker = pool.execute(new Uint8Array([254, 20]));
  const count = QUEUE_CELLS * 2 + 5;
  const jobs = Array.from({ length: count }, (_, n) => new Uint8Array([0, n & 0xff, n >> 8]));
  const pending = jobs.map((job) => pool.execute(job));
  assert.ok(pool.queued >= count - 1, `${pool.queued} queued`);
  await blocker;
  const results = await Promise.all(pending);
  // Each result is the worker's id, then the job reversed: [id, n >> 8, n & 0xff, 0].
  assert.deepEqual(results.map((r) => r[2] | (r[1] << 8)), jobs.map((_, n) => n));
});

const BYTES_WORKER = new URL("./fixtures/bytes_worker.ts", import.meta.url);

Deno.test("jobs waiting for room get it when the queue is full of cancelled jobs", async () => {
  await using pool = new ThreadPool<Uint8Array, Uint8Array>(1, BYTES_WORKER, { codec: BYTES_CODEC });
  await pool.ready;
  const blocker = pool.execute(new Uint8Array([254, 20])); // 200 ms
  await new Promise((resolve) => setTimeout(resolve, 20));
  const cancel = new AbortController();
  const cancelled = Array.from(
    { length: QUEUE_CELLS },
    () => pool.execute(new Uint8Array([0]), { signal: cancel.signal }).catch((error) => error),
  );
  const waiting = pool.execute(new Uint8Array([0, 1]));
  cancel.abort(new Error("not wanted"));
  assert.ok((await Promise.all(cancelled)).every((error) => error instanceof Error));
  await blocker;
  assert.deepEqual([...(await waiting).subarray(1)], [1, 0]);
  assert.deepEqual([...(await pool.execute(new Uint8Array([0, 2]))).subarray(1)], [2, 0]);
});

Deno.test("a worker that crashes while idle is replaced and the queue bound still holds", async () => {
  const replaced: number[] = [];
  await using pool = new ThreadPool<Uint8Array, Uint8Array>(1, BYTES_WORKER, {
    codec: BYTES_CODEC,
    maxQueue: 1,
    onWorkerReplaced: (id) => replaced.push(id),
  });
  await pool.execute(new Uint8Array([253]));
  while (replaced.length === 0 || pool.readyWorkers === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  const blocker = pool.execute(new Uint8Array([254, 20]));
  await new Promise((resolve) => setTimeout(resolve, 20));
  const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => pool.execute(new Uint8Array([0]))));
  await blocker;
  assert.equal(outcomes.filter((o) => o.status === "fulfilled").length, 1, "one job fits the queue");
  assert.equal(outcomes.filter((o) => o.status === "rejected").length, 4, "the rest are refused");
});

Deno.test("maxQueue counts jobs beyond those the idle workers take at once", async () => {
  await using pool = new ThreadPool<Uint8Array, Uint8Array>(2, BYTES_WORKER, { codec: BYTES_CODEC, maxQueue: 2 });
  await pool.ready;
  // Let both workers go to sleep waiting for a job.
  await new Promise((resolve) => setTimeout(resolve, 100));
  // A burst in one turn of the event loop: two jobs for the two idle workers, two that wait.
  const outcomes = await Promise.allSettled(
    Array.from({ length: 20 }, () => pool.execute(new Uint8Array([254, 5]))),
  );
  const refused = outcomes.filter((o) => o.status === "rejected");
  assert.equal(outcomes.length - refused.length, 4);
  assert.ok(refused.every((o) => o.reason instanceof QueueFullError));
});
