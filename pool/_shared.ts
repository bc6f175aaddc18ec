/**
 * The pool's shared-memory channel: one job queue that every worker takes
 * from, and one reply ring per worker. Plain logic over `SharedArrayBuffer`s
 * and `Atomics`, with no workers or messages, so both ends can be tested in
 * one thread.
 *
 * Theory of operation.
 *
 * The job queue is a bounded multi-consumer queue after Dmitry Vyukov's: a
 * ring of cells, each with a sequence word. The main thread (the only
 * producer) writes a job's bytes into a data area, fills the next cell and
 * publishes it by setting its sequence to `pos + 1`. A worker claims the
 * cell at `HEAD` by moving `HEAD` on with compare-and-swap, marks the cell
 * taken by its own number, records the position as the job it runs, copies
 * the bytes out, and frees the cell by setting its sequence to `pos + CELLS`.
 * Before moving `HEAD` it records which position it is claiming, so that if
 * it is terminated midway the main thread can tell its claim from another's.
 * A queued job can be cancelled by the main thread, which marks the cell
 * cancelled before any worker marks it taken; the worker that claims it then
 * skips it. Positions are 32-bit and wrap; every comparison is a difference.
 *
 * A worker with nothing to do raises its sleeping flag and waits on `TAIL`,
 * which the main thread bumps after each job; at the end of the event
 * loop's turn the pool wakes as many sleeping workers as there are new jobs,
 * so a burst of requests costs one wake-up per worker, not one per request.
 * A worker that skips cancelled jobs tells the main thread, as for a reply,
 * since their room may be what waiting jobs need. Workers
 * bump `REPLIES` and notify it after each reply, which wakes the main thread.
 *
 * A reply ring is a single-producer, single-consumer ring of variable-size
 * entries: its worker writes, the main thread reads.
 *
 * @module
 */

/** Cells in the job queue: the most jobs queued and not yet copied out by a worker. */
export const QUEUE_CELLS = 1024;
/** Bytes for the jobs in the queue; a job over a quarter of it goes by message instead. */
export const QUEUE_BYTES = 4 * 1024 * 1024;
/** Bytes in each worker's reply ring; a reply over a quarter of it goes by message instead. */
export const REPLY_BYTES = 1024 * 1024;

// Words of the queue's control block.
const HEAD = 0;
const TAIL = 1;
const REPLIES = 2;
// Workers in waitForJob. A worker terminated there leaves it one too high, never too low,
// which only costs a needless notify.
const SLEEPERS = 3;
const CONTROL_WORDS = 4;

// Words of one cell: its sequence, its state, and where its bytes are.
const SEQ = 0;
const STATE = 1;
const OFFSET = 2;
const LENGTH = 3;
const CELL_WORDS = 4;

// Cell states. A taken cell holds TAKEN + the number of the worker that took it.
const READY = 1;
const CANCELLED = 2;
const TAKEN = 16;
// The length of a job whose payload goes by message, because it has no bytes or too many.
const BY_MESSAGE = -1;

const MASK = QUEUE_CELLS - 1;

/** The shared buffers of one job queue, as sent to each worker. */
export interface QueueBuffers {
  control: SharedArrayBuffer;
  cells: SharedArrayBuffer;
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
 * The job queue, seen from either side.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { JobQueue, RunningJob } from "./_shared.ts";
 * const queue = new JobQueue();
 * const pos = queue.publish(new Uint8Array([7, 8]));
 * const worker = new JobQueue(queue.buffers);
 * const claim = worker.claim(0, new RunningJob());
 * assert.deepEqual([claim?.pos, [...claim!.bytes!]], [pos, [7, 8]]);
 * assert.equal(worker.claim(0, new RunningJob()), undefined);
 * ```
 */
export class JobQueue {
  /** The buffers to hand to workers. */
  readonly buffers: QueueBuffers;
  readonly #control: Int32Array;
  readonly #cells: Int32Array;
  readonly #data: Uint8Array;
  // Producer-only bookkeeping: the next position, where the next bytes go,
  // the oldest position whose bytes may still be in use, and bytes in use.
  #tail = 0;
  #write = 0;
  #release = 0;
  #used = 0;
  readonly #spans = new Int32Array(QUEUE_CELLS);

  /** Creates a queue, or attaches to a queue's buffers from another thread. */
  constructor(buffers?: QueueBuffers) {
    this.buffers = buffers ?? {
      control: new SharedArrayBuffer(CONTROL_WORDS * 4),
      cells: new SharedArrayBuffer(QUEUE_CELLS * CELL_WORDS * 4),
      data: new SharedArrayBuffer(QUEUE_BYTES),
    };
    this.#control = new Int32Array(this.buffers.control);
    this.#cells = new Int32Array(this.buffers.cells);
    this.#data = new Uint8Array(this.buffers.data);
    if (!buffers) {
      for (let i = 0; i < QUEUE_CELLS; i++) this.#cells[i * CELL_WORDS + SEQ] = i;
    }
  }

  /** Jobs published and not yet claimed (cancelled ones included). Main thread. */
  get unclaimed(): number {
    return Math.max(0, (this.#tail - Atomics.load(this.#control, HEAD)) | 0);
  }

  /** The position of the next job a worker will claim. */
  get head(): number {
    return Atomics.load(this.#control, HEAD);
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
    let span = 0;
    if (length > 0) {
      if (this.#used === 0) this.#write = 0;
      offset = this.#write;
      span = length;
      if (offset + length > QUEUE_BYTES) {
        span += QUEUE_BYTES - offset; // the end of the area is skipped
        offset = 0;
      }
      if (this.#used + span > QUEUE_BYTES) return -1;
      write!(this.#data.subarray(offset, offset + length));
      this.#write = offset + length;
      this.#used += span;
    }
    const cell = (pos & MASK) * CELL_WORDS;
    this.#spans[pos & MASK] = span;
    this.#cells[cell + OFFSET] = offset;
    this.#cells[cell + LENGTH] = length;
    Atomics.store(this.#cells, cell + STATE, READY);
    Atomics.store(this.#cells, cell + SEQ, (pos + 1) | 0);
    this.#tail = (pos + 1) | 0;
    Atomics.store(this.#control, TAIL, this.#tail);
    return pos;
  }

  /**
   * Main thread: wakes up to `count` workers waiting in
   * {@linkcode JobQueue.waitForJob}. Call it after publishing, once workers
   * are seen sleeping.
   */
  wakeWorkers(count: number): void {
    Atomics.notify(this.#control, TAIL, count);
  }

  /** Main thread: {@linkcode JobQueue.publishWith} for bytes already at hand. */
  publish(bytes: Uint8Array): number {
    return this.publishWith(bytes.length, (into) => into.set(bytes));
  }

  /** Main thread: the largest job that travels through the queue's bytes. */
  static readonly maxInline = QUEUE_BYTES / 4;

  /** Main thread: marks a queued job cancelled. False when a worker already took it. */
  cancel(pos: number): boolean {
    const cell = (pos & MASK) * CELL_WORDS;
    if (Atomics.load(this.#cells, cell + SEQ) !== ((pos + 1) | 0)) return false;
    return Atomics.compareExchange(this.#cells, cell + STATE, READY, CANCELLED) === READY;
  }

  /**
   * Main thread: which worker took the job at `pos`, read from its cell, or
   * -1 when the cell no longer says (not taken yet, or already reused).
   */
  takenBy(pos: number): number {
    const cell = (pos & MASK) * CELL_WORDS;
    if (Atomics.load(this.#cells, cell + SEQ) !== ((pos + 1) | 0)) return -1;
    const state = Atomics.load(this.#cells, cell + STATE);
    return state >= TAKEN ? state - TAKEN : -1;
  }

  /**
   * Main thread: whether the cell at `pos` looks left half-claimed by the
   * worker whose record is `record`: still ready, `HEAD` past it, and the
   * worker's last recorded claim. A live worker passes through this state
   * for an instant between moving `HEAD` and marking the cell, so only a
   * cell seen so twice, well apart, is abandoned as half-claimed.
   */
  halfClaimed(pos: number, record: RunningJob): boolean {
    const cell = (pos & MASK) * CELL_WORDS;
    return Atomics.load(this.#cells, cell + SEQ) === ((pos + 1) | 0) &&
      Atomics.load(this.#cells, cell + STATE) === READY &&
      ((Atomics.load(this.#control, HEAD) - pos) | 0) > 0 &&
      record.claiming === pos;
  }

  /**
   * Main thread, some time after worker `worker` was terminated (its record
   * is `record`): whether the job at `pos` was claimed by it and not yet
   * copied out: it marked the cell taken, or (when `halfClaimed` is true,
   * see {@linkcode JobQueue.halfClaimed}) it moved `HEAD` past the cell it
   * had recorded claiming before marking it. Such a cell is freed, so the
   * queue is not stuck behind it.
   */
  abandon(pos: number, worker: number, record: RunningJob, halfClaimed = false): boolean {
    const cell = (pos & MASK) * CELL_WORDS;
    if (Atomics.load(this.#cells, cell + SEQ) !== ((pos + 1) | 0)) return false;
    const state = Atomics.load(this.#cells, cell + STATE);
    const orphan = state === TAKEN + worker ||
      (halfClaimed && this.halfClaimed(pos, record) &&
        Atomics.compareExchange(this.#cells, cell + STATE, READY, CANCELLED) === READY);
    if (orphan) Atomics.store(this.#cells, cell + SEQ, (pos + QUEUE_CELLS) | 0);
    return orphan;
  }

  /**
   * Worker: takes the oldest queued job, records it in `running`, and
   * returns it; `undefined` when the queue is empty.
   */
  claim(worker: number, running: RunningJob): Claim | undefined {
    let skipped = false;
    for (;;) {
      if (running.retired) return undefined;
      const head = Atomics.load(this.#control, HEAD);
      const cell = (head & MASK) * CELL_WORDS;
      const seq = Atomics.load(this.#cells, cell + SEQ);
      const ahead = (seq - ((head + 1) | 0)) | 0;
      if (ahead < 0) {
        // Nothing published at HEAD yet. Cancelled jobs skipped on the way gave back room.
        if (skipped) this.signalReply();
        return undefined;
      }
      if (ahead > 0) continue; // another worker moved HEAD on; look again
      running.claim(head);
      if (Atomics.compareExchange(this.#control, HEAD, head, (head + 1) | 0) !== head) continue;
      const free = (head + QUEUE_CELLS) | 0;
      if (Atomics.compareExchange(this.#cells, cell + STATE, READY, TAKEN + worker) !== READY) {
        Atomics.store(this.#cells, cell + SEQ, free); // cancelled while queued
        skipped = true;
        continue;
      }
      running.start(head);
      const length = this.#cells[cell + LENGTH];
      const offset = this.#cells[cell + OFFSET];
      const bytes = length === BY_MESSAGE ? undefined : this.#data.slice(offset, offset + length);
      Atomics.store(this.#cells, cell + SEQ, free);
      if (skipped) this.signalReply();
      // More jobs wait and a worker may sleep: wake it for the next, so the main thread
      // wakes one worker per burst, not one per job.
      if (Atomics.load(this.#control, SLEEPERS) > 0 && Atomics.load(this.#control, TAIL) !== ((head + 1) | 0)) {
        Atomics.notify(this.#control, TAIL, 1);
      }
      return { pos: head, bytes };
    }
  }

  /**
   * Worker: waits until a job may have been queued, without blocking the
   * worker's event loop. Call it after {@linkcode JobQueue.claim} found
   * nothing; it checks again once it has counted itself as waiting.
   */
  async waitForJob(worker: number, running: RunningJob): Promise<Claim | undefined> {
    const tail = Atomics.load(this.#control, TAIL);
    running.sleeping = true;
    Atomics.add(this.#control, SLEEPERS, 1);
    try {
      const claim = this.claim(worker, running);
      if (claim) return claim;
      const wait = Atomics.waitAsync(this.#control, TAIL, tail);
      if (wait.async) await wait.value;
      return undefined;
    } finally {
      Atomics.sub(this.#control, SLEEPERS, 1);
      running.sleeping = false;
    }
  }

  /** Worker: tells the main thread a reply is ready (the main thread, to end its own wait). */
  signalReply(): void {
    Atomics.add(this.#control, REPLIES, 1);
    Atomics.notify(this.#control, REPLIES, 1);
  }

  /** Main thread: a number that changes whenever a worker signals a reply. */
  replySignal(): number {
    return Atomics.load(this.#control, REPLIES);
  }

  /** Main thread: waits until the reply signal differs from `seen`; false when it already did. */
  waitForReply(seen: number): Promise<unknown> | false {
    const wait = Atomics.waitAsync(this.#control, REPLIES, seen);
    return wait.async ? wait.value : false;
  }

  // Moves the release point past every job a worker has copied out, giving back its bytes.
  #reclaim(): void {
    while (this.#release !== this.#tail) {
      const seq = Atomics.load(this.#cells, (this.#release & MASK) * CELL_WORDS + SEQ);
      if (seq !== ((this.#release + QUEUE_CELLS) | 0)) break;
      this.#used -= this.#spans[this.#release & MASK];
      this.#release = (this.#release + 1) | 0;
    }
  }
}

// Words of a worker's control block: the job it runs (position, busy flag),
// its reply ring's write and read offsets, the position it is claiming, and
// whether it sleeps.
const RUNNING = 0;
const BUSY = 1;
const WRITE = 2;
const READ = 3;
const CLAIMING = 4;
const SLEEPING = 5;
const RETIRED = 6;
const WORKER_WORDS = 7;
// Each reply entry starts with its length, its job's position and its kind.
const ENTRY_HEAD = 12;
const WRAP = -1;

/**
 * The job a worker is running, in shared memory so the main thread can see
 * it (for timeouts, cancellation, and a worker that died).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RunningJob } from "./_shared.ts";
 * const running = new RunningJob();
 * running.start(41);
 * assert.equal(new RunningJob(running.buffer).current, 41);
 * running.stop();
 * assert.equal(running.current, undefined);
 * ```
 */
export class RunningJob {
  /** The buffer shared with the worker; also holds its reply ring. */
  readonly buffer: SharedArrayBuffer;
  readonly #words: Int32Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(WORKER_WORDS * 4 + REPLY_BYTES);
    this.#words = new Int32Array(this.buffer, 0, WORKER_WORDS);
  }

  /** Worker: records that it runs the job at `pos`. */
  start(pos: number): void {
    Atomics.store(this.#words, RUNNING, pos);
    Atomics.store(this.#words, BUSY, 1);
  }

  /** Worker: records that it runs nothing. */
  stop(): void {
    Atomics.store(this.#words, BUSY, 0);
  }

  /** Whether the pool has stopped this worker: `terminate()` does not stop synchronous code at once. */
  get retired(): boolean {
    return Atomics.load(this.#words, RETIRED) === 1;
  }

  /** Main thread: marks the worker stopped, so it claims no more jobs. */
  retire(): void {
    Atomics.store(this.#words, RETIRED, 1);
  }

  /** Worker: records the position it is about to claim. */
  claim(pos: number): void {
    Atomics.store(this.#words, CLAIMING, pos);
  }

  /** The position last recorded by {@linkcode RunningJob.claim}. */
  get claiming(): number {
    return Atomics.load(this.#words, CLAIMING);
  }

  /** Whether the worker waits for a job; the pool wakes only sleeping workers. */
  get sleeping(): boolean {
    return Atomics.load(this.#words, SLEEPING) === 1;
  }

  set sleeping(value: boolean) {
    Atomics.store(this.#words, SLEEPING, value ? 1 : 0);
  }

  /** The position of the job being run, if any. */
  get current(): number | undefined {
    return Atomics.load(this.#words, BUSY) === 1 ? Atomics.load(this.#words, RUNNING) : undefined;
  }
}

/**
 * A worker's reply ring: results written by the worker, read by the main
 * thread, in a {@linkcode RunningJob}'s buffer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ReplyRing, RunningJob } from "./_shared.ts";
 * const running = new RunningJob();
 * const worker = new ReplyRing(running.buffer);
 * assert.ok(worker.write(3, 0, 2, (into) => into.set([1, 2])));
 * const seen: number[][] = [];
 * new ReplyRing(running.buffer).read((pos, kind, bytes) => seen.push([pos, kind, ...bytes]));
 * assert.deepEqual(seen, [[3, 0, 1, 2]]);
 * ```
 */
export class ReplyRing {
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  readonly #view: DataView;

  constructor(buffer: SharedArrayBuffer) {
    this.#words = new Int32Array(buffer, 0, WORKER_WORDS);
    this.#bytes = new Uint8Array(buffer, WORKER_WORDS * 4, REPLY_BYTES);
    this.#view = new DataView(buffer, WORKER_WORDS * 4, REPLY_BYTES);
  }

  /** The largest reply that travels through the ring. */
  static readonly maxInline = REPLY_BYTES / 4;

  /**
   * Worker: appends a reply of `length` bytes, written by `write`, for the
   * job at `pos`. False when the ring has no room now.
   */
  write(pos: number, kind: number, length: number, write: (into: Uint8Array) => void): boolean {
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
    this.#view.setInt32(offset + 8, kind, true);
    write(this.#bytes.subarray(offset + ENTRY_HEAD, offset + ENTRY_HEAD + length));
    Atomics.store(this.#words, WRITE, (at + need) | 0);
    return true;
  }

  /** Main thread: hands every reply written so far to `each`, with a private copy of its bytes. */
  read(each: (pos: number, kind: number, bytes: Uint8Array) => void): void {
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
      const kind = this.#view.getInt32(offset + 8, true);
      const bytes = this.#bytes.slice(offset + ENTRY_HEAD, offset + ENTRY_HEAD + length);
      at = (at + ENTRY_HEAD + ((length + 3) & ~3)) | 0;
      // Give the room back before handing the reply on, so a slow `each` does not hold it.
      Atomics.store(this.#words, READ, at);
      each(pos, kind, bytes);
    }
  }
}
