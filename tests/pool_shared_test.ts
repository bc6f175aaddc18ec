import assert from "node:assert/strict";
import { JobQueue, QUEUE_BYTES, QUEUE_CELLS, REPLY_BYTES, ReplyRing, RunningJob } from "../pool/_shared.ts";
import { QueueFullError, ThreadPool } from "../pool/mod.ts";
import { BYTES_CODEC, LARGE_RESULT } from "./fixtures/bytes_worker.ts";

// Deterministic bytes of a given length, different for each seed.
function bytesOf(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

Deno.test("JobQueue hands out jobs oldest first, with their bytes, across many wraps of its cells and bytes", () => {
  const queue = new JobQueue();
  const worker = new JobQueue(queue.buffers);
  const running = new RunningJob();
  let next = 0;
  let taken = 0;
  // Sizes that do not divide the byte area, so entries straddle its end.
  const sizeOf = (n: number) => (n * 7919) % 70_000;
  while (taken < 5 * QUEUE_CELLS) {
    // Publish a few, claim a few, so the queue is sometimes nearly full and sometimes empty.
    for (let i = 0; i < 3; i++) {
      if (queue.publish(bytesOf(next, sizeOf(next))) === -1) break;
      next++;
    }
    for (let i = 0; i < 2 + (taken % 3); i++) {
      const claim = worker.claim(0, running);
      if (!claim) break;
      assert.equal(running.current, claim.pos);
      assert.deepEqual(claim.bytes, bytesOf(taken, sizeOf(taken)), `job ${taken}`);
      taken++;
    }
  }
  assert.ok(next >= taken);
});

Deno.test("JobQueue says it is full when its cells or its bytes run out, and takes jobs again once they are claimed", () => {
  const queue = new JobQueue();
  const worker = new JobQueue(queue.buffers);
  for (let i = 0; i < QUEUE_CELLS; i++) assert.notEqual(queue.publish(new Uint8Array(1)), -1);
  assert.equal(queue.publish(new Uint8Array(1)), -1);
  assert.equal(queue.unclaimed, QUEUE_CELLS);
  while (worker.claim(0, new RunningJob())) {
    // drain
  }
  const quarter = new Uint8Array(JobQueue.maxInline);
  for (let i = 0; i < QUEUE_BYTES / quarter.length; i++) assert.notEqual(queue.publish(quarter), -1);
  assert.equal(queue.publish(new Uint8Array(1)), -1, "the byte area is full");
  assert.ok(worker.claim(0, new RunningJob()));
  assert.notEqual(queue.publish(new Uint8Array(1)), -1);
});

Deno.test("JobQueue skips a job cancelled while queued, and cannot cancel one already taken", () => {
  const queue = new JobQueue();
  const worker = new JobQueue(queue.buffers);
  const first = queue.publish(new Uint8Array([1]));
  const second = queue.publish(new Uint8Array([2]));
  assert.ok(queue.cancel(first));
  const claim = worker.claim(3, new RunningJob());
  assert.equal(claim?.pos, second);
  assert.equal(queue.cancel(second), false);
  assert.equal(queue.takenBy(second), -1, "a job copied out has freed its cell");
  assert.equal(worker.claim(3, new RunningJob()), undefined);
});

Deno.test("JobQueue carries a job without bytes for one whose payload goes by message", () => {
  const queue = new JobQueue();
  const pos = queue.publishWith(-1);
  const claim = new JobQueue(queue.buffers).claim(0, new RunningJob());
  assert.deepEqual(claim, { pos, bytes: undefined });
});

Deno.test("JobQueue.abandon leaves alone jobs that are queued or already copied out", () => {
  const queue = new JobQueue();
  const worker = new JobQueue(queue.buffers);
  const copied = queue.publish(new Uint8Array([1]));
  const queued = queue.publish(new Uint8Array([2]));
  const record = new RunningJob();
  worker.claim(5, record);
  assert.equal(queue.abandon(copied, 5, record), false);
  assert.equal(queue.abandon(queued, 5, record), false);
  assert.equal(worker.claim(6, new RunningJob())?.pos, queued);
});

Deno.test("JobQueue.abandon frees a cell a terminated worker took or was claiming, and only that worker's", () => {
  const queue = new JobQueue();
  const cells = new Int32Array(queue.buffers.cells);
  const control = new Int32Array(queue.buffers.control);
  // Worker 5 marked the cell taken and died before copying the job out.
  const taken = queue.publish(new Uint8Array([1]));
  Atomics.store(control, 0, taken + 1); // it moved HEAD past the cell
  Atomics.store(cells, (taken % QUEUE_CELLS) * 4 + 1, 16 + 5); // and marked it taken
  const dead = new RunningJob();
  assert.equal(queue.abandon(taken, 6, new RunningJob()), false, "another worker's cell");
  assert.ok(queue.abandon(taken, 5, dead));
  // Worker 7 recorded its claim and moved HEAD, then died before marking the cell.
  const claimed = queue.publish(new Uint8Array([2]));
  const dying = new RunningJob();
  dying.claim(claimed);
  Atomics.store(control, 0, claimed + 1);
  assert.equal(queue.abandon(claimed, 8, new RunningJob(), true), false, "not what the other worker was claiming");
  assert.ok(queue.halfClaimed(claimed, dying));
  assert.equal(queue.abandon(claimed, 7, dying), false, "half-claimed, but not yet confirmed");
  assert.ok(queue.abandon(claimed, 7, dying, true));
  // Both cells are free again: the queue takes a full ring of jobs after them.
  for (let i = 0; i < QUEUE_CELLS; i++) assert.notEqual(queue.publish(new Uint8Array(1)), -1, `job ${i}`);
});

Deno.test("ReplyRing passes replies in order across many wraps, says when it is full, and frees room as they are read", () => {
  const running = new RunningJob();
  const writer = new ReplyRing(running.buffer);
  const reader = new ReplyRing(running.buffer);
  let written = 0;
  let read = 0;
  const sizeOf = (n: number) => (n * 104_729) % ReplyRing.maxInline;
  while (read < 200) {
    while (writer.write(written, 7, sizeOf(written), (into) => into.set(bytesOf(written, sizeOf(written))))) {
      written++;
    }
    assert.ok(written > read, "a reply fits in an empty ring");
    reader.read((pos, kind, bytes) => {
      assert.deepEqual([pos, kind], [read, 7]);
      assert.deepEqual(bytes, bytesOf(read, sizeOf(read)));
      read++;
    });
  }
  assert.ok(written * ReplyRing.maxInline / 2 > 4 * REPLY_BYTES, "the test wrapped the ring several times");
});

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
