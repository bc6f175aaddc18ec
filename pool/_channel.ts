/**
 * The job channel between the pool (main thread) and its workers: one job
 * queue that every worker takes from, and one block per worker with its
 * jobs in flight, its doorbell, its heartbeat and its reply ring. All of it
 * lives in `SharedArrayBuffer`s and is driven with `Atomics`; no workers and
 * no messages here, so both ends can be tested in one thread.
 *
 * The rules, in one place.
 *
 * 1. The queue is a ring of cells (after Dmitry Vyukov's bounded queue). A
 *    cell's 32-bit word holds the lap of the position it is for (the
 *    position's 16 bits above the cell index) and a state: `FREE` (position
 *    `p` may be written), `READY` (job `p` is published), `CANCELLED`, or
 *    `TAKEN + n` (worker number `n` took it). The main thread, the only
 *    producer, writes a job's bytes into the data area, then publishes it by
 *    storing `(p, READY)`. Positions are 32-bit and wrap; every comparison is
 *    a difference. A claim that stalls between reading a cell and swapping it
 *    could match a later job in the same cell only after 2^26 more jobs.
 * 2. A worker claims the job at `HEAD` with one compare-and-swap of its cell
 *    from `(p, READY)` to `(p, TAKEN + n)`: that single step both takes the
 *    job and says who took it. It then moves `HEAD` on, lists `p` among its
 *    jobs in flight, copies the bytes out, and frees the cell to
 *    `(p + CELLS, FREE)`, again by compare-and-swap. Anyone who finds a cell
 *    at `HEAD` that is already taken or cancelled moves `HEAD` past it; the
 *    one whose move succeeds past a cancelled cell frees it.
 * 3. The main thread cancels a queued job by swapping `(p, READY)` to
 *    `(p, CANCELLED)`; once a worker has taken it, cancelling is the
 *    worker's business (a message).
 * 4. A worker that dies holds exactly the jobs in its in-flight list and the
 *    cells still marked `TAKEN + n`. The main thread reads its reply ring
 *    first (those jobs are done), then takes those cells back with the same
 *    compare-and-swap the worker would have used to free them, so a thread
 *    that outlives `terminate()` for a moment cannot free a cell twice.
 * 5. Waking. A worker with room for another job and nothing to do parks: it
 *    raises `PARKED`, counts itself in the queue's `IDLE` when it has no job
 *    in flight, looks at the queue once more, and waits: an idle worker on
 *    the queue's shared `IDLE_BELL`, a busy one on its own doorbell. Once per
 *    turn of its event loop the main thread wakes, for the jobs nobody took,
 *    one idle worker (a worker that takes a job and sees more waiting wakes
 *    the next); with none idle, it counts a serving worker that is awake
 *    with nothing in flight as about to take one (it has just replied), and
 *    rings the busy parked workers with the fewest jobs in flight for the
 *    rest. A worker with jobs in flight takes another on its own only while
 *    no idle worker is parked, so a job reaches an idle thread before a busy
 *    one, and a CPU-bound job does not queue behind another on one thread
 *    while a second thread sleeps. A rung worker takes at least one job. A
 *    worker whose thread is held takes nothing; if a wake went to such a
 *    worker, the pool's sweep wakes every parked worker.
 * 6. Replies. Each worker writes results into its own single-producer,
 *    single-consumer ring, takes the job off its list, then bumps the
 *    queue's `REPLIES` word and notifies it, which ends the main thread's
 *    wait; so the main thread never sees a reply from a worker that still
 *    counts the job, and a dead worker's ring is read before its list. A
 *    worker that frees room in the queue (by skipping cancelled jobs) bumps
 *    it too.
 * 7. A worker bumps its heartbeat when it takes a job and a few times a
 *    second while it has jobs in flight, so the pool can tell a thread whose
 *    event loop stopped turning from one whose jobs are merely waiting.
 *
 * @module
 */

/** Cells in the job queue: the most jobs queued and not yet copied out by a worker. */
export const QUEUE_CELLS = 1024;
/** Bytes for the jobs in the queue; a job over a quarter of it goes by message instead. */
export const QUEUE_BYTES = 4 * 1024 * 1024;
/** Bytes in each worker's reply ring; a reply over a quarter of it goes by message instead. */
export const REPLY_BYTES = 1024 * 1024;
/** How often a worker with jobs in flight bumps its heartbeat. */
export const HEARTBEAT_MS = 50;

// Words of the queue's control block.
const HEAD = 0;
const TAIL = 1;
const REPLIES = 2;
// Workers parked with no job in flight, and the doorbell they wait on together.
const IDLE = 3;
const IDLE_BELL = 4;
const CONTROL_WORDS = 5;

// A cell's word: the lap of the position it is for (its position's bits above the cell index,
// 16 of them) in the high half, its state in the low half.
const LAP_SHIFT = Math.log2(QUEUE_CELLS);
// Cell states.
const FREE = 0;
const READY = 1;
const CANCELLED = 2;
const TAKEN = 16;
/** The most workers a queue tells apart at once: a taken cell holds `TAKEN` + the worker's number in 16 bits. */
export const MAX_WORKER_NUMBERS = 0xffff - TAKEN + 1;
// The length of a job whose payload goes by message, because it has no bytes or too many.
const BY_MESSAGE = -1;

const MASK = QUEUE_CELLS - 1;

function lapOf(pos: number): number {
  return (pos >>> LAP_SHIFT) & 0xffff;
}

function cellWord(pos: number, state: number): number {
  return (lapOf(pos) << 16) | state;
}

// How far the lap a cell holds is ahead of `pos`'s lap: 0 for the same, negative for an older one.
function lapsAhead(word: number, pos: number): number {
  return (((word >>> 16) - lapOf(pos)) << 16) >> 16;
}

/** The shared buffers of one job queue, as sent to each worker. */
export interface QueueBuffers {
  control: SharedArrayBuffer;
  cells: SharedArrayBuffer;
  spans: SharedArrayBuffer;
  data: SharedArrayBuffer;
}

/** A job a worker has claimed. */
export interface Claim {
  /** Its position in the queue, which names it in replies and messages. */
  pos: number;
  /** A private copy of its bytes, or `undefined` when the payload comes by message. */
  bytes: Uint8Array | undefined;
}

/**
 * The job queue, seen from either side (rules 1 to 4).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { JobQueue, WorkerBlock } from "./_channel.ts";
 * const queue = new JobQueue();
 * const pos = queue.publish(new Uint8Array([7, 8]));
 * const block = new WorkerBlock(1);
 * const claim = new JobQueue(queue.buffers).claim(3, block);
 * assert.deepEqual([claim?.pos, [...claim!.bytes!], block.inflight()], [pos, [7, 8], [pos]]);
 * ```
 */
export class JobQueue {
  /** The buffers to hand to workers. */
  readonly buffers: QueueBuffers;
  readonly #control: Int32Array;
  readonly #cells: Int32Array;
  // Each cell's offset and length in the data area.
  readonly #spans: Int32Array;
  readonly #data: Uint8Array;
  // Producer-only bookkeeping: the next position, where the next bytes go, the
  // oldest position whose bytes may still be in use, and bytes in use.
  #tail = 0;
  #write = 0;
  #release = 0;
  #used = 0;
  readonly #sizes = new Int32Array(QUEUE_CELLS);

  /**
   * Creates a queue whose first job takes position `start` (tests start near
   * the wrap points), or attaches to a queue's buffers from another thread.
   */
  constructor(buffers?: QueueBuffers, start = 0) {
    this.buffers = buffers ?? {
      control: new SharedArrayBuffer(CONTROL_WORDS * 4),
      cells: new SharedArrayBuffer(QUEUE_CELLS * 4),
      spans: new SharedArrayBuffer(QUEUE_CELLS * 2 * 4),
      data: new SharedArrayBuffer(QUEUE_BYTES),
    };
    this.#control = new Int32Array(this.buffers.control);
    this.#cells = new Int32Array(this.buffers.cells);
    this.#spans = new Int32Array(this.buffers.spans);
    this.#data = new Uint8Array(this.buffers.data);
    if (!buffers) {
      // Each cell is free for the first position that maps to it.
      for (let n = 0; n < QUEUE_CELLS; n++) this.#cells[(start + n) & MASK] = cellWord(start + n, FREE);
      this.#tail = this.#release = start | 0;
      this.#control[HEAD] = this.#control[TAIL] = start | 0;
    }
  }

  /** The largest job that travels through the queue's bytes. */
  static readonly maxInline = QUEUE_BYTES / 4;

  /** Jobs published and not yet claimed (cancelled ones included). */
  get unclaimed(): number {
    return Math.max(0, (Atomics.load(this.#control, TAIL) - Atomics.load(this.#control, HEAD)) | 0);
  }

  /** The position of the next job a worker will claim. */
  get head(): number {
    return Atomics.load(this.#control, HEAD);
  }

  /** Workers parked with no job in flight (rule 5). */
  get idleWorkers(): number {
    return Atomics.load(this.#control, IDLE);
  }

  /**
   * Main thread: queues a job given as bytes (written by `write` into the
   * view it is given), or, with `length` -1, a job whose payload the
   * claiming worker will ask for by message. Returns its position, or -1
   * when the queue has no room now.
   */
  publishWith(length: number, write?: (into: Uint8Array) => void): number {
    this.#reclaim();
    const pos = this.#tail;
    // The cell is free once the job QUEUE_CELLS positions back has been copied out.
    if (((pos - this.#release) | 0) >= QUEUE_CELLS) return -1;
    let offset = 0;
    let size = 0;
    if (length > 0) {
      if (this.#used === 0) this.#write = 0;
      offset = this.#write;
      size = length;
      if (offset + length > QUEUE_BYTES) {
        size += QUEUE_BYTES - offset; // the end of the area is skipped
        offset = 0;
      }
      if (this.#used + size > QUEUE_BYTES) return -1;
      write!(this.#data.subarray(offset, offset + length));
      this.#write = offset + length;
      this.#used += size;
    }
    const index = pos & MASK;
    this.#sizes[index] = size;
    this.#spans[index * 2] = offset;
    this.#spans[index * 2 + 1] = length;
    Atomics.store(this.#cells, index, cellWord(pos, READY));
    this.#tail = (pos + 1) | 0;
    Atomics.store(this.#control, TAIL, this.#tail);
    return pos;
  }

  /** Main thread: {@linkcode JobQueue.publishWith} for bytes already at hand. */
  publish(bytes: Uint8Array): number {
    return this.publishWith(bytes.length, (into) => into.set(bytes));
  }

  /** Main thread: marks a queued job cancelled (rule 3). False when a worker already took it. */
  cancel(pos: number): boolean {
    const ready = cellWord(pos, READY);
    return Atomics.compareExchange(this.#cells, pos & MASK, ready, cellWord(pos, CANCELLED)) === ready;
  }

  /** The number of the worker whose claim of `pos` still holds its cell, or -1. */
  takenBy(pos: number): number {
    const word = Atomics.load(this.#cells, pos & MASK);
    const state = word & 0xffff;
    return lapsAhead(word, pos) === 0 && state >= TAKEN ? state - TAKEN : -1;
  }

  /**
   * Main thread, after worker `worker` died: takes back every cell it had
   * claimed and not yet freed (rule 4), and returns their positions.
   */
  takeBack(worker: number): number[] {
    const found: number[] = [];
    const taken = TAKEN + worker;
    for (let index = 0; index < QUEUE_CELLS; index++) {
      const word = Atomics.load(this.#cells, index);
      if ((word & 0xffff) !== taken) continue;
      // A cell not yet freed holds one of the last QUEUE_CELLS positions published.
      const oldest = (this.#tail - QUEUE_CELLS) | 0;
      const pos = (oldest + ((index - oldest) & MASK)) | 0;
      if (Atomics.compareExchange(this.#cells, index, word, cellWord(pos + QUEUE_CELLS, FREE)) === word) {
        found.push(pos);
      }
    }
    return found;
  }

  /**
   * Worker: takes the oldest queued job for worker `worker`, lists it in
   * `block`'s jobs in flight, and returns it; `undefined` when the queue is
   * empty or the worker has been retired.
   */
  claim(worker: number, block: WorkerBlock): Claim | undefined {
    let skipped = false;
    try {
      for (;;) {
        if (block.retired) return undefined;
        const head = Atomics.load(this.#control, HEAD);
        const index = head & MASK;
        const word = Atomics.load(this.#cells, index);
        const ahead = lapsAhead(word, head);
        if (ahead !== 0) {
          // A cell still holding an older job means nothing is published at HEAD; one already
          // freed for a later job means HEAD is behind it (stale, or its taker died first).
          if (ahead < 0) return undefined;
          Atomics.compareExchange(this.#control, HEAD, head, (head + 1) | 0);
          continue;
        }
        const state = word & 0xffff;
        if (state === FREE) return undefined;
        if (state !== READY) {
          // Taken or cancelled: move HEAD past it; whoever does so frees a cancelled cell.
          const moved = Atomics.compareExchange(this.#control, HEAD, head, (head + 1) | 0) === head;
          if (moved && state === CANCELLED) {
            Atomics.compareExchange(this.#cells, index, word, cellWord(head + QUEUE_CELLS, FREE));
            skipped = true;
          }
          continue;
        }
        const taken = cellWord(head, TAKEN + worker);
        if (Atomics.compareExchange(this.#cells, index, word, taken) !== word) continue;
        Atomics.compareExchange(this.#control, HEAD, head, (head + 1) | 0);
        block.add(head);
        const offset = this.#spans[index * 2];
        const length = this.#spans[index * 2 + 1];
        const bytes = length === BY_MESSAGE ? undefined : this.#data.slice(offset, offset + length);
        if (Atomics.compareExchange(this.#cells, index, taken, cellWord(head + QUEUE_CELLS, FREE)) !== taken) {
          // The main thread took the job back: it gave this worker up for dead.
          block.remove(head);
          return undefined;
        }
        return { pos: head, bytes };
      }
    } finally {
      // Cancelled jobs skipped on the way gave back room that waiting jobs may need.
      if (skipped) this.signalReply();
    }
  }

  /** The idle workers' doorbell, to wait on with {@linkcode JobQueue.waitForIdleBell}. */
  get idleBell(): number {
    return Atomics.load(this.#control, IDLE_BELL);
  }

  /** Worker: waits until the idle workers' doorbell differs from `bell`; undefined when it already does. */
  waitForIdleBell(bell: number): Promise<unknown> | undefined {
    const wait = Atomics.waitAsync(this.#control, IDLE_BELL, bell);
    return wait.async ? wait.value : undefined;
  }

  /** Wakes up to `count` idle parked workers, in the order they parked (rule 5). */
  ringIdle(count: number): void {
    Atomics.add(this.#control, IDLE_BELL, 1);
    Atomics.notify(this.#control, IDLE_BELL, count);
  }

  /** Worker: counts itself among the idle parked workers (rule 5). */
  enterIdle(): void {
    Atomics.add(this.#control, IDLE, 1);
  }

  /** Undoes one {@linkcode JobQueue.enterIdle}. */
  leaveIdle(): void {
    Atomics.sub(this.#control, IDLE, 1);
  }

  /** Worker: tells the main thread a reply is ready, ending its wait (rule 6). */
  signalReply(): void {
    Atomics.add(this.#control, REPLIES, 1);
    Atomics.notify(this.#control, REPLIES, 1);
  }

  /** Main thread: a number that changes whenever a worker signals a reply. */
  replySignal(): number {
    return Atomics.load(this.#control, REPLIES);
  }

  /** Main thread: waits until the reply signal differs from `seen`; false when it already does. */
  waitForReply(seen: number): Promise<unknown> | false {
    const wait = Atomics.waitAsync(this.#control, REPLIES, seen);
    return wait.async ? wait.value : false;
  }

  // Moves the release point past every job a worker has copied out, giving back its bytes.
  #reclaim(): void {
    while (this.#release !== this.#tail) {
      const index = this.#release & MASK;
      if (Atomics.load(this.#cells, index) !== cellWord(this.#release + QUEUE_CELLS, FREE)) break;
      this.#used -= this.#sizes[index];
      this.#release = (this.#release + 1) | 0;
    }
  }
}

// Words of a worker's block.
// The doorbell: the main thread adds one and notifies it to wake the worker.
const BELL = 0;
// 1 while the worker is parked and not yet rung.
const PARKED = 1;
// 1 while the worker is counted in the queue's IDLE; whoever clears it uncounts it.
const IDLE_FLAG = 2;
const INFLIGHT = 3;
const BEAT = 4;
const RETIRED = 5;
const CAPACITY = 6;
// The reply ring's write and read offsets.
const WRITE = 7;
const READ = 8;
// 1 once the worker is set up and serving: its loop takes jobs.
const SERVING = 9;
const BLOCK_WORDS = 10;
// Each reply entry starts with its length and its job's position.
const ENTRY_HEAD = 8;
const WRAP = -1;

/**
 * One worker's block of shared memory: its doorbell, its jobs in flight,
 * its heartbeat, and its reply ring. The worker writes; the main thread
 * reads, rings and retires.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WorkerBlock } from "./_channel.ts";
 * const block = new WorkerBlock(4);
 * block.add(10);
 * block.add(11);
 * block.remove(10);
 * assert.deepEqual(new WorkerBlock(4, block.buffer).inflight(), [11]);
 * ```
 */
export class WorkerBlock {
  /** The buffer shared with the worker. */
  readonly buffer: SharedArrayBuffer;
  readonly #words: Int32Array;
  readonly #list: Int32Array;
  readonly #ring: Uint8Array;
  readonly #view: DataView;
  // Worker side: how many jobs the list holds (its only writer keeps the count).
  #count = 0;

  /** A block for a worker that runs up to `capacity` jobs at once, or a view of `buffer`. */
  constructor(capacity: number, buffer?: SharedArrayBuffer) {
    const listBytes = capacity * 4;
    this.buffer = buffer ?? new SharedArrayBuffer(BLOCK_WORDS * 4 + listBytes + REPLY_BYTES);
    this.#words = new Int32Array(this.buffer, 0, BLOCK_WORDS);
    this.#list = new Int32Array(this.buffer, BLOCK_WORDS * 4, capacity);
    this.#ring = new Uint8Array(this.buffer, BLOCK_WORDS * 4 + listBytes, REPLY_BYTES);
    this.#view = new DataView(this.buffer, BLOCK_WORDS * 4 + listBytes, REPLY_BYTES);
    if (!buffer) this.#words[CAPACITY] = capacity;
  }

  /** The largest reply that travels through the ring. */
  static readonly maxInline = REPLY_BYTES / 4;

  /** The most jobs the worker runs at once. */
  get capacity(): number {
    return this.#words[CAPACITY];
  }

  /** Jobs in flight. */
  get load(): number {
    return Atomics.load(this.#words, INFLIGHT);
  }

  /** The positions of the jobs in flight (a snapshot; exact once the worker is stopped). */
  inflight(): number[] {
    const count = Math.min(Atomics.load(this.#words, INFLIGHT), this.#list.length);
    const out: number[] = [];
    for (let i = 0; i < count; i++) out.push(Atomics.load(this.#list, i));
    return out;
  }

  /** Worker: lists the job at `pos` in flight. */
  add(pos: number): void {
    Atomics.store(this.#list, this.#count, pos);
    Atomics.store(this.#words, INFLIGHT, ++this.#count);
  }

  /** Worker: takes the job at `pos` off the list; false when it was not there. */
  remove(pos: number): boolean {
    // The newest jobs are at the end, and they tend to end first.
    let at = this.#count - 1;
    while (at >= 0 && this.#list[at] !== pos) at--;
    if (at === -1) return false;
    const last = --this.#count;
    if (at !== last) Atomics.store(this.#list, at, this.#list[last]);
    Atomics.store(this.#words, INFLIGHT, last);
    return true;
  }

  /** Worker: shows that its event loop turns (rule 7). */
  beat(): void {
    Atomics.add(this.#words, BEAT, 1);
  }

  /** A number that changes whenever the worker beats. */
  get heartbeat(): number {
    return Atomics.load(this.#words, BEAT);
  }

  /** Whether the pool has given this worker up: it must take no more jobs. */
  get retired(): boolean {
    return Atomics.load(this.#words, RETIRED) === 1;
  }

  /** Main thread: gives the worker up, so it claims no more jobs (terminating a thread is not instant). */
  retire(): void {
    Atomics.store(this.#words, RETIRED, 1);
  }

  /** Whether the worker's loop takes jobs (it is set up and not stopping). */
  get serving(): boolean {
    return Atomics.load(this.#words, SERVING) === 1;
  }

  set serving(value: boolean) {
    Atomics.store(this.#words, SERVING, value ? 1 : 0);
  }

  /** Whether the worker is parked and not yet rung. */
  get parked(): boolean {
    return Atomics.load(this.#words, PARKED) === 1;
  }

  /** Its own doorbell's value, to wait on with {@linkcode WorkerBlock.waitForBell}. */
  get bell(): number {
    return Atomics.load(this.#words, BELL);
  }

  /** Worker: parks (rule 5), counted among the idle workers in `queue` when it has no job in flight. */
  park(queue: JobQueue): void {
    if (this.#count === 0 && Atomics.exchange(this.#words, IDLE_FLAG, 1) === 0) queue.enterIdle();
    Atomics.store(this.#words, PARKED, 1);
  }

  /** Worker: waits for its own doorbell to change from `bell`, without blocking the event loop. */
  waitForBell(bell: number): Promise<unknown> | undefined {
    const wait = Atomics.waitAsync(this.#words, BELL, bell);
    return wait.async ? wait.value : undefined;
  }

  /** Worker (or the main thread for a dead worker): leaves the parked state and the idle count. */
  unpark(queue: JobQueue): void {
    Atomics.store(this.#words, PARKED, 0);
    if (Atomics.compareExchange(this.#words, IDLE_FLAG, 1, 0) === 1) queue.leaveIdle();
  }

  /** Whether the worker is parked with no job in flight. */
  get idle(): boolean {
    return Atomics.load(this.#words, IDLE_FLAG) === 1 && Atomics.load(this.#words, PARKED) === 1;
  }

  /** Main thread: wakes the worker, parked with jobs in flight, if not yet rung; says whether it did. */
  ring(): boolean {
    if (Atomics.compareExchange(this.#words, PARKED, 1, 0) !== 1) return false;
    Atomics.add(this.#words, BELL, 1);
    Atomics.notify(this.#words, BELL, 1);
    return true;
  }

  /**
   * Worker: appends a reply of `length` bytes, written by `write`, for the
   * job at `pos`. False when the ring has no room now.
   */
  writeReply(pos: number, length: number, write: (into: Uint8Array) => void): boolean {
    const need = ENTRY_HEAD + ((length + 3) & ~3);
    let at = Atomics.load(this.#words, WRITE);
    const read = Atomics.load(this.#words, READ);
    const free = REPLY_BYTES - ((at - read) | 0);
    let offset = at & (REPLY_BYTES - 1);
    const toEnd = REPLY_BYTES - offset;
    if (need > toEnd) {
      if (free < toEnd + need) return false;
      this.#view.setInt32(offset, WRAP, true);
      at = (at + toEnd) | 0;
      offset = 0;
    } else if (free < need) {
      return false;
    }
    this.#view.setInt32(offset, length, true);
    this.#view.setInt32(offset + 4, pos, true);
    write(this.#ring.subarray(offset + ENTRY_HEAD, offset + ENTRY_HEAD + length));
    Atomics.store(this.#words, WRITE, (at + need) | 0);
    return true;
  }

  /**
   * Main thread: hands every reply written so far to `each`, with `tag`
   * (the worker's number, say) and a private copy of its bytes.
   */
  readReplies<Tag>(each: (tag: Tag, pos: number, bytes: Uint8Array) => void, tag: Tag): void {
    let at = Atomics.load(this.#words, READ);
    const end = Atomics.load(this.#words, WRITE);
    while (at !== end) {
      const offset = at & (REPLY_BYTES - 1);
      const length = this.#view.getInt32(offset, true);
      if (length === WRAP) {
        at = (at + REPLY_BYTES - offset) | 0;
        continue;
      }
      const pos = this.#view.getInt32(offset + 4, true);
      const bytes = this.#ring.slice(offset + ENTRY_HEAD, offset + ENTRY_HEAD + length);
      at = (at + ENTRY_HEAD + ((length + 3) & ~3)) | 0;
      // Give the room back before handing the reply on, so a slow `each` does not hold it.
      Atomics.store(this.#words, READ, at);
      each(tag, pos, bytes);
    }
  }
}

/** A worker's end of the channel, as the main thread holds it. */
export interface WorkerPort {
  /** The worker's number, unique among all the pool has started; its claims carry it. */
  readonly number: number;
  /** Its block, to send to the worker and to read from. */
  readonly block: WorkerBlock;
}

/**
 * The pool's side of the job channel: put jobs in, take replies out, wake
 * workers, and take back what a dead worker held. `SharedChannel` is the
 * shared-memory implementation.
 */
export interface JobChannel {
  /** What a worker needs to attach to the queue. */
  readonly buffers: QueueBuffers;
  /** Jobs queued and not yet taken. */
  readonly unclaimed: number;
  /** The position of the next job a worker will take; it moves when jobs are taken. */
  readonly head: number;
  /**
   * Queues a job of `length` bytes written by `write`, or, with `length` -1,
   * one whose payload goes by message. Its position, or -1 when full.
   */
  put(length: number, write?: (into: Uint8Array) => void): number;
  /** Drops a queued job; false when a worker has taken it. */
  cancel(pos: number): boolean;
  /** Opens a block for a new worker that runs up to `capacity` jobs at once. */
  open(capacity: number): WorkerPort;
  /** Stops ringing a worker and reading its replies; `retire` it first if it may still run. */
  close(port: WorkerPort): void;
  /** Frees a closed worker's number for a new worker, once nothing of it can remain in the queue. */
  forget(port: WorkerPort): void;
  /** Rings parked workers for the jobs nobody took, idle ones first; `all` rings every parked worker. */
  wake(all?: boolean): void;
  /** Room for more jobs in the workers that are parked now. */
  parkedRoom(): number;
  /** The worker holding the job at `pos`, if one does. */
  ownerOf(pos: number): WorkerPort | undefined;
  /** Hands every reply written so far, from every open block, to `each` with the worker's number. */
  takeReplies(each: (number: number, pos: number, bytes: Uint8Array) => void): void;
  /** A number that changes whenever a worker replies. */
  replySignal(): number;
  /** Resolves once the reply signal differs from `seen`; false when it already does. */
  waitForReply(seen: number): Promise<unknown> | false;
  /** Ends a `waitForReply` (when the pool closes). */
  interrupt(): void;
  /**
   * Takes back what a retired worker holds: its replies go to `each`, then
   * the positions of the jobs still in its list or its claimed cells are
   * returned, their cells freed.
   */
  recover(port: WorkerPort, each: (pos: number, bytes: Uint8Array) => void): number[];
}

/**
 * The shared-memory {@linkcode JobChannel}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { JobQueue, SharedChannel } from "./_channel.ts";
 * const channel = new SharedChannel();
 * const port = channel.open(2);
 * const pos = channel.put(1, (into) => into[0] = 9);
 * const claim = new JobQueue(channel.buffers).claim(port.number, port.block);
 * assert.equal(channel.ownerOf(pos), port);
 * assert.equal(claim?.bytes?.[0], 9);
 * ```
 */
export class SharedChannel implements JobChannel {
  /** The largest job that travels through the queue's bytes; larger ones go by message. */
  static readonly maxInline = JobQueue.maxInline;
  readonly #queue = new JobQueue();
  readonly #ports = new Map<number, WorkerPort>();
  // Numbers of open workers and of closed ones not yet forgotten, and the next to try.
  readonly #used = new Set<number>();
  #next = 0;

  get buffers(): QueueBuffers {
    return this.#queue.buffers;
  }

  get unclaimed(): number {
    return this.#queue.unclaimed;
  }

  get head(): number {
    return this.#queue.head;
  }

  put(length: number, write?: (into: Uint8Array) => void): number {
    return this.#queue.publishWith(length, write);
  }

  cancel(pos: number): boolean {
    return this.#queue.cancel(pos);
  }

  open(capacity: number): WorkerPort {
    if (this.#used.size >= MAX_WORKER_NUMBERS) {
      throw new RangeError(`Cannot open a worker: ${MAX_WORKER_NUMBERS} workers are open or not yet forgotten`);
    }
    while (this.#used.has(this.#next)) this.#next = (this.#next + 1) % MAX_WORKER_NUMBERS;
    const port = { number: this.#next, block: new WorkerBlock(capacity) };
    this.#next = (this.#next + 1) % MAX_WORKER_NUMBERS;
    this.#used.add(port.number);
    this.#ports.set(port.number, port);
    return port;
  }

  close(port: WorkerPort): void {
    if (this.#ports.get(port.number) === port) this.#ports.delete(port.number);
  }

  forget(port: WorkerPort): void {
    this.close(port);
    this.#used.delete(port.number);
  }

  wake(all = false): void {
    let need = all ? Infinity : this.#queue.unclaimed;
    if (need === 0) return;
    // Idle workers first: one, which wakes the next if more jobs wait (WorkerEnd.claim).
    const idle = this.#queue.idleWorkers;
    if (idle > 0) {
      this.#queue.ringIdle(all ? Infinity : 1);
      need -= Math.min(need, idle);
      if (need === 0) return;
    }
    // A worker awake with nothing in flight is about to look at the queue (it has just
    // replied); then the busy ones that have room, the least loaded first.
    let busy: WorkerPort[] | undefined;
    for (const port of this.#ports.values()) {
      const { block } = port;
      if (block.parked) {
        if (!block.idle) (busy ??= []).push(port);
      } else if (block.serving && block.load === 0 && !all) {
        if (--need === 0) return;
      }
    }
    if (!busy) return;
    if (busy.length > 1) busy.sort((a, b) => a.block.load - b.block.load);
    for (const { block } of busy) {
      if (block.ring()) need--;
      if (need === 0) return;
    }
  }

  parkedRoom(): number {
    let room = 0;
    for (const { block } of this.#ports.values()) {
      if (block.parked) room += block.capacity - block.load;
    }
    return room;
  }

  ownerOf(pos: number): WorkerPort | undefined {
    // The cell names its taker until the job is copied out; the job is listed in flight before that.
    const number = this.#queue.takenBy(pos);
    if (number !== -1) return this.#ports.get(number);
    for (const port of this.#ports.values()) {
      if (port.block.inflight().includes(pos)) return port;
    }
    return undefined;
  }

  takeReplies(each: (number: number, pos: number, bytes: Uint8Array) => void): void {
    for (const port of this.#ports.values()) port.block.readReplies(each, port.number);
  }

  replySignal(): number {
    return this.#queue.replySignal();
  }

  waitForReply(seen: number): Promise<unknown> | false {
    return this.#queue.waitForReply(seen);
  }

  interrupt(): void {
    this.#queue.signalReply();
  }

  recover(port: WorkerPort, each: (pos: number, bytes: Uint8Array) => void): number[] {
    const { block } = port;
    block.readReplies((_number, pos, bytes) => each(pos, bytes), port.number);
    block.unpark(this.#queue);
    const held = new Set(block.inflight());
    for (const pos of this.#queue.takeBack(port.number)) held.add(pos);
    return [...held];
  }
}

/**
 * A worker's side of the channel: take jobs, park, reply, and release.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SharedChannel, WorkerEnd } from "./_channel.ts";
 * const channel = new SharedChannel();
 * const port = channel.open(1);
 * const end = new WorkerEnd(channel.buffers, port.number, port.block.buffer);
 * const pos = channel.put(0);
 * assert.equal(end.claim()?.pos, pos);
 * end.release(pos);
 * assert.equal(port.block.load, 0);
 * ```
 */
export class WorkerEnd {
  readonly #queue: JobQueue;
  readonly #number: number;
  readonly #block: WorkerBlock;
  // The doorbell wait in progress, reused while the bell has not changed.
  #bell: { value: number; wait: Promise<unknown> | undefined; done: boolean } | undefined;

  constructor(queue: QueueBuffers, number: number, block: SharedArrayBuffer) {
    this.#queue = new JobQueue(queue);
    this.#number = number;
    const capacity = new Int32Array(block, 0, BLOCK_WORDS)[CAPACITY];
    this.#block = new WorkerBlock(capacity, block);
  }

  /** The largest reply that travels through the ring. */
  static readonly maxInline = WorkerBlock.maxInline;

  /** The most jobs this worker runs at once. */
  get capacity(): number {
    return this.#block.capacity;
  }

  /** Whether a job is queued. */
  get hasJobs(): boolean {
    return this.#queue.unclaimed > 0;
  }

  /** Whether a worker with jobs in flight must leave queued jobs to an idle one (rule 5). */
  get idleWorkerWaiting(): boolean {
    return this.#queue.idleWorkers > 0;
  }

  /** Takes the oldest queued job, listing it in flight; `undefined` when there is none. */
  claim(): Claim | undefined {
    const claim = this.#queue.claim(this.#number, this.#block);
    if (!claim) return undefined;
    this.#block.beat();
    // More jobs wait and an idle worker sleeps: wake it, so the main thread wakes one per burst.
    if (this.#queue.unclaimed > 0 && this.#queue.idleWorkers > 0) this.#queue.ringIdle(1);
    return claim;
  }

  /** Takes a finished job off the list of jobs in flight. */
  release(pos: number): void {
    this.#block.remove(pos);
  }

  /** Shows that the event loop turns (rule 7). */
  beat(): void {
    this.#block.beat();
  }

  /** Says whether the worker's loop takes jobs now. */
  set serving(value: boolean) {
    this.#block.serving = value;
  }

  /** Takes no more jobs: the worker is ending. */
  retire(): void {
    this.#block.retire();
    this.#block.serving = false;
  }

  /**
   * Parks until the main thread rings (true) or `other` settles (false).
   * Resolves at once when a job this worker may take is already queued.
   */
  async park(other: Promise<unknown>): Promise<boolean> {
    const busy = this.#block.load > 0;
    const bell = busy ? this.#block.bell : this.#queue.idleBell;
    this.#block.park(this.#queue);
    try {
      if (this.hasJobs && (!busy || !this.idleWorkerWaiting)) return true;
      if (!busy) {
        // Idle: wait with the other idle workers. Only a ring ends this wait, so none is left behind.
        const wait = this.#queue.waitForIdleBell(bell);
        if (wait) await wait;
        return true;
      }
      if (this.#bell === undefined || this.#bell.done || this.#bell.value !== bell) {
        const state: { value: number; wait: Promise<unknown> | undefined; done: boolean } = {
          value: bell,
          wait: undefined,
          done: false,
        };
        state.wait = this.#block.waitForBell(bell)?.then(() => state.done = true);
        if (state.wait === undefined) return true; // rung meanwhile
        this.#bell = state;
      }
      return await Promise.race([this.#bell.wait!.then(() => true), other.then(() => false)]);
    } finally {
      this.#block.unpark(this.#queue);
    }
  }

  /**
   * Writes the reply for the job at `pos` into the ring; false when it does
   * not fit now. Release the job, then {@linkcode WorkerEnd.signalReply}:
   * the main thread then sees the room it freed (rule 6).
   */
  reply(pos: number, length: number, write: (into: Uint8Array) => void): boolean {
    return this.#block.writeReply(pos, length, write);
  }

  /** Wakes the main thread to read the replies written. */
  signalReply(): void {
    this.#queue.signalReply();
  }
}
