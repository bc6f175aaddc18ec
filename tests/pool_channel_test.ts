// The job channel on its own (pool/_channel.ts): both ends in one thread, no workers and no messages.
import assert from "node:assert/strict";
import {
  JobQueue,
  QUEUE_BYTES,
  QUEUE_CELLS,
  REPLY_BYTES,
  SharedChannel,
  WorkerBlock,
  WorkerEnd,
} from "../pool/_channel.ts";

// Deterministic bytes of a given length, different for each seed.
function bytesOf(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i * 7) & 0xff;
  return out;
}

// Writes a cell's word as a worker would have left it: position `pos` (its lap), state `state`.
function setCell(queue: JobQueue, pos: number, state: number): void {
  const cells = new Int32Array(queue.buffers.cells);
  const lap = (pos >>> Math.log2(QUEUE_CELLS)) & 0xffff;
  Atomics.store(cells, pos & (QUEUE_CELLS - 1), (lap << 16) | state);
}

const TAKEN = 16;

// Resolves to "rung", "other" or "pending" after `ms`.
async function outcome(park: Promise<boolean>, ms = 100): Promise<"rung" | "other" | "pending"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"pending">((resolve) => timer = setTimeout(() => resolve("pending"), ms));
  try {
    return await Promise.race([park.then((rung) => rung ? "rung" as const : "other" as const), late]);
  } finally {
    clearTimeout(timer);
  }
}

function endFor(channel: SharedChannel, capacity: number): { end: WorkerEnd; block: WorkerBlock; number: number } {
  const port = channel.open(capacity);
  return {
    end: new WorkerEnd(channel.buffers, port.number, port.block.buffer),
    block: port.block,
    number: port.number,
  };
}

Deno.test("JobQueue hands out jobs oldest first, with their bytes, across many wraps of its cells and bytes", () => {
  const queue = new JobQueue();
  const worker = new JobQueue(queue.buffers);
  const block = new WorkerBlock(8);
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
      const claim = worker.claim(0, block);
      if (!claim) break;
      assert.deepEqual(block.inflight(), [claim.pos]);
      assert.deepEqual(claim.bytes, bytesOf(taken, sizeOf(taken)), `job ${taken}`);
      block.remove(claim.pos);
      taken++;
    }
  }
  assert.ok(next >= taken);
});

Deno.test("JobQueue says it is full when its cells or its bytes run out, and takes jobs again once they are copied out", () => {
  const queue = new JobQueue();
  const worker = new JobQueue(queue.buffers);
  for (let i = 0; i < QUEUE_CELLS; i++) assert.notEqual(queue.publish(new Uint8Array(1)), -1);
  assert.equal(queue.publish(new Uint8Array(1)), -1);
  assert.equal(queue.unclaimed, QUEUE_CELLS);
  const block = new WorkerBlock(1);
  for (let claim = worker.claim(0, block); claim; claim = worker.claim(0, block)) block.remove(claim.pos);
  const quarter = new Uint8Array(JobQueue.maxInline);
  for (let i = 0; i < QUEUE_BYTES / quarter.length; i++) assert.notEqual(queue.publish(quarter), -1);
  assert.equal(queue.publish(new Uint8Array(1)), -1, "the byte area is full");
  assert.ok(worker.claim(0, block));
  assert.notEqual(queue.publish(new Uint8Array(1)), -1);
});

Deno.test("JobQueue skips a job cancelled while queued, and cannot cancel one already taken", () => {
  const queue = new JobQueue();
  const worker = new JobQueue(queue.buffers);
  const first = queue.publish(new Uint8Array([1]));
  const second = queue.publish(new Uint8Array([2]));
  assert.ok(queue.cancel(first));
  assert.equal(queue.cancel(first), false, "already cancelled");
  const claim = worker.claim(3, new WorkerBlock(2));
  assert.equal(claim?.pos, second);
  assert.equal(queue.cancel(second), false);
  assert.equal(queue.takenBy(second), -1, "a job copied out has freed its cell");
  assert.equal(worker.claim(3, new WorkerBlock(2)), undefined);
  // Both cells are free again: the queue takes a full ring of jobs after them.
  for (let i = 0; i < QUEUE_CELLS; i++) assert.notEqual(queue.publish(new Uint8Array(1)), -1, `job ${i}`);
});

Deno.test("JobQueue carries a job without bytes for one whose payload goes by message", () => {
  const queue = new JobQueue();
  const pos = queue.publishWith(-1);
  const claim = new JobQueue(queue.buffers).claim(0, new WorkerBlock(1));
  assert.deepEqual(claim, { pos, bytes: undefined });
});

Deno.test("JobQueue.takeBack frees the cells a dead worker took, only that worker's, and the queue moves past them", () => {
  const queue = new JobQueue();
  const worker = new JobQueue(queue.buffers);
  const first = queue.publish(new Uint8Array([1]));
  const second = queue.publish(new Uint8Array([2]));
  const third = queue.publish(new Uint8Array([3]));
  // Worker 5 took the first job and died before moving HEAD or copying it out.
  setCell(queue, first, TAKEN + 5);
  assert.equal(queue.takenBy(first), 5);
  assert.deepEqual(queue.takeBack(6), [], "another worker's cell");
  assert.deepEqual(queue.takeBack(5), [first]);
  assert.deepEqual(queue.takeBack(5), [], "taken back once");
  // HEAD was left on the freed cell; the next claim moves past it.
  assert.equal(queue.head, first);
  assert.equal(worker.claim(7, new WorkerBlock(4))?.pos, second);
  // A cell another worker took but has not yet copied out is stepped over, not claimed twice.
  setCell(queue, third, TAKEN + 8);
  assert.equal(worker.claim(7, new WorkerBlock(4)), undefined);
  assert.equal(queue.head, third + 1);
  assert.deepEqual(queue.takeBack(8), [third]);
  for (let i = 0; i < QUEUE_CELLS; i++) assert.notEqual(queue.publish(new Uint8Array(1)), -1, `job ${i}`);
});

Deno.test("JobQueue: a retired worker claims nothing", () => {
  const queue = new JobQueue();
  queue.publish(new Uint8Array([1]));
  const block = new WorkerBlock(1);
  block.retire();
  assert.equal(new JobQueue(queue.buffers).claim(0, block), undefined);
  assert.equal(queue.unclaimed, 1);
});

for (const start of [0x7fff_fff0, -16]) {
  Deno.test(`JobQueue positions wrap through ${start < 0 ? "2^32" : "2^31"} without losing or repeating a job`, () => {
    const queue = new JobQueue(undefined, start);
    const worker = new JobQueue(queue.buffers);
    const block = new WorkerBlock(4);
    const seen: number[] = [];
    for (let n = 0; n < 40; n++) {
      // Two in, two out: positions cross the wrap point while jobs are queued.
      const a = queue.publish(new Uint8Array([n, 0]));
      const b = queue.publish(new Uint8Array([n, 1]));
      assert.deepEqual([a, b], [(start + 2 * n) | 0, (start + 2 * n + 1) | 0]);
      for (const expected of [a, b]) {
        const claim = worker.claim(0, block);
        assert.equal(claim?.pos, expected);
        seen.push(claim!.bytes![0] * 2 + claim!.bytes![1]);
        block.remove(expected);
      }
    }
    assert.deepEqual(seen, Array.from({ length: 80 }, (_, i) => i));
    assert.equal(worker.claim(0, block), undefined);
    const pos = queue.publish(new Uint8Array([9]));
    assert.ok(queue.cancel(pos));
    assert.equal(worker.claim(0, block), undefined, "the cancelled job after the wrap is skipped");
  });
}

Deno.test("WorkerBlock lists jobs in flight and shows them to the other side as they come and go", () => {
  const worker = new WorkerBlock(3);
  const main = new WorkerBlock(3, worker.buffer);
  worker.add(5);
  worker.add(6);
  worker.add(7);
  assert.deepEqual(main.inflight().toSorted(), [5, 6, 7]);
  assert.equal(main.load, 3);
  assert.ok(worker.remove(5));
  assert.equal(worker.remove(5), false, "already removed");
  assert.deepEqual(main.inflight().toSorted(), [6, 7]);
  worker.add(8);
  assert.ok(worker.remove(7));
  assert.deepEqual(main.inflight().toSorted(), [6, 8]);
  assert.equal(main.capacity, 3);
});

Deno.test("WorkerBlock's reply ring passes replies in order across many wraps, says when full, and frees room as read", () => {
  const writer = new WorkerBlock(1);
  const reader = new WorkerBlock(1, writer.buffer);
  let written = 0;
  let read = 0;
  const sizeOf = (n: number) => (n * 104_729) % WorkerBlock.maxInline;
  while (read < 200) {
    while (writer.writeReply(written, sizeOf(written), (into) => into.set(bytesOf(written, sizeOf(written))))) {
      written++;
    }
    assert.ok(written > read, "a reply fits in an empty ring");
    reader.readReplies((tag, pos, bytes) => {
      assert.deepEqual([tag, pos], ["t", read]);
      assert.deepEqual(bytes, bytesOf(read, sizeOf(read)));
      read++;
    }, "t");
  }
  assert.ok(written * WorkerBlock.maxInline / 2 > 4 * REPLY_BYTES, "the test wrapped the ring several times");
});

Deno.test("SharedChannel rings an idle parked worker before a busy one", async () => {
  const channel = new SharedChannel();
  const busy = endFor(channel, 4);
  const idle = endFor(channel, 4);
  // The busy worker holds a job in flight.
  channel.put(0);
  const held = busy.end.claim();
  assert.ok(held);
  const never = new Promise<void>(() => {});
  const busyPark = busy.end.park(never);
  const idlePark = idle.end.park(never);
  assert.ok(busy.end.idleWorkerWaiting, "the idle worker is counted as waiting");
  channel.put(0);
  channel.wake();
  assert.equal(await outcome(idlePark), "rung");
  assert.equal(await outcome(busyPark), "pending", "one job, one ring, to the idle worker");
  // A second job with only the busy worker parked: it is rung.
  assert.ok(idle.end.claim());
  channel.put(0);
  channel.wake();
  assert.equal(await outcome(busyPark), "rung");
});

Deno.test("SharedChannel rings the least loaded of the busy parked workers, and wake(all) rings every one", async () => {
  const channel = new SharedChannel();
  const ends = [endFor(channel, 8), endFor(channel, 8), endFor(channel, 8)];
  // Loads 3, 1 and 2.
  for (const [index, count] of [[0, 3], [1, 1], [2, 2]]) {
    for (let i = 0; i < count; i++) {
      channel.put(0);
      assert.ok(ends[index].end.claim());
    }
  }
  const never = new Promise<void>(() => {});
  const parks = ends.map(({ end }) => end.park(never));
  channel.put(0);
  channel.wake();
  assert.deepEqual(await Promise.all(parks.map((park) => outcome(park, 50))), ["pending", "rung", "pending"]);
  const again = [ends[1].end.park(never)];
  channel.wake(true);
  assert.deepEqual(
    await Promise.all([parks[0], again[0], parks[2]].map((park) => outcome(park, 50))),
    ["rung", "rung", "rung"],
  );
});

Deno.test("WorkerEnd.park returns at once when a job it may take is queued, and when a job of its own ends", async () => {
  const channel = new SharedChannel();
  const { end } = endFor(channel, 2);
  channel.put(0);
  assert.equal(await outcome(end.park(new Promise<void>(() => {}))), "rung", "a queued job for an idle worker");
  assert.ok(end.claim());
  const { promise, resolve } = Promise.withResolvers<void>();
  const park = end.park(promise);
  resolve();
  assert.equal(await outcome(park), "other");
});

Deno.test("a busy worker leaves a queued job to an idle parked one, and takes it once none is idle", async () => {
  const channel = new SharedChannel();
  const busy = endFor(channel, 4);
  const idle = endFor(channel, 4);
  channel.put(0);
  assert.ok(busy.end.claim());
  const idlePark = idle.end.park(new Promise<void>(() => {}));
  channel.put(0);
  assert.equal(busy.end.idleWorkerWaiting, true);
  // Parking with a job queued but an idle worker waiting does not return at once.
  assert.equal(await outcome(busy.end.park(new Promise<void>(() => {})), 50), "pending");
  channel.wake();
  assert.equal(await outcome(idlePark), "rung");
  assert.equal(idle.end.idleWorkerWaiting, false, "the rung worker left the idle count");
});

Deno.test("SharedChannel.recover hands over a dead worker's replies, then returns the jobs it held", () => {
  const channel = new SharedChannel();
  const { end, number } = endFor(channel, 4);
  const done = channel.put(0);
  const running = channel.put(0);
  const claimedOnly = channel.put(0);
  assert.ok(end.claim());
  assert.ok(end.claim());
  assert.ok(end.reply(done, 2, (into) => into.set([4, 2])));
  end.release(done);
  // The third job's cell is marked taken by this worker, not yet copied out.
  const queue = new JobQueue(channel.buffers);
  setCell(queue, claimedOnly, TAKEN + number);
  const owner = channel.ownerOf(running);
  assert.equal(owner?.number, number);
  assert.equal(channel.ownerOf(claimedOnly)?.number, number);
  owner!.block.retire();
  const replies: Array<[number, number[]]> = [];
  const held = channel.recover(owner!, (pos, bytes) => replies.push([pos, [...bytes]]));
  assert.deepEqual(replies, [[done, [4, 2]]]);
  assert.deepEqual(held.toSorted((a, b) => a - b), [running, claimedOnly]);
  assert.equal(end.claim(), undefined, "a retired worker takes nothing");
});

Deno.test("SharedChannel.parkedRoom counts the room of parked workers only", async () => {
  const channel = new SharedChannel();
  const a = endFor(channel, 3);
  const b = endFor(channel, 5);
  assert.equal(channel.parkedRoom(), 0);
  channel.put(0);
  assert.ok(a.end.claim());
  const parkA = a.end.park(new Promise<void>(() => {}));
  assert.equal(channel.parkedRoom(), 2);
  const parkB = b.end.park(new Promise<void>(() => {}));
  assert.equal(channel.parkedRoom(), 7);
  channel.wake(true);
  await Promise.all([parkA, parkB]);
  assert.equal(channel.parkedRoom(), 0);
});
