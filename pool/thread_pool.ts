/**
 * A fixed-size pool of module Web Workers fed from one shared queue, after the
 * `ThreadPool` of the book's web server chapter.
 *
 * Theory of operation: every job enters one queue (`_channel.ts`), and each
 * worker takes the oldest job whenever its event loop is free and it runs
 * fewer than `concurrency` jobs, as the book's workers take jobs from one
 * channel. A job therefore never waits behind a busy worker while another
 * is free, and a job that blocks its thread holds only that worker.
 *
 * This file keeps the jobs (`Task`s): it puts them in the channel, settles
 * them from the replies, relays progress and cancellation, enforces
 * timeouts, and replaces workers that die or get stuck. Each thread's life
 * is in `_worker.ts`; how jobs and replies cross between threads, and who
 * is woken for which job, is in `_channel.ts`.
 *
 * @module
 */
import { type JobChannel, SharedChannel } from "./_channel.ts";
import { deserializeError, type FromWorker, type ProgressMessage, type ToWorker } from "./_messages.ts";
import { Worker } from "./_worker.ts";
import {
  JobTimeoutError,
  PoolClosedError,
  QueueFullError,
  QueueTimeoutError,
  WorkerCrashError,
  WorkerStartError,
  WorkerStuckError,
} from "./errors.ts";
import {
  DEFAULT_POOL_OPTIONS,
  type ExecuteOptions,
  MAX_CONCURRENCY,
  type PoolStats,
  type ResolvedPoolOptions,
  type ThreadPoolOptions,
  type WorkerStats,
} from "./options.ts";

// After a replacement worker fails to start, wait this long before trying again, twice as long
// after each failure in a row, up to the cap: a start that keeps failing costs little.
const RESPAWN_DELAY_MS = 1000;
const RESPAWN_DELAY_MAX_MS = 60_000;
// How often the pool checks for jobs nobody took, timeouts, stuck workers and dead workers' leftovers.
const SWEEP_MS = 50;
// A worker is stuck only after this long without a heartbeat, whatever its jobs' timeouts:
// a few heartbeats, so a thread the system merely paused is not mistaken for one.
const MIN_STALL_MS = 200;
// After a worker is terminated, wait this long (it stops within microseconds)
// before settling jobs it may have claimed in its last moments...
const REAP_DELAY_MS = 100;
// ...and keep checking it this long: a thread the system left waiting midway through
// a claim may still complete it after that.
const REAP_WINDOW_MS = 5000;

// One job, from execute() until it settles.
class Task {
  readonly job: unknown;
  readonly options: ExecuteOptions;
  // Its position in the shared queue, once it is there.
  pos: number | undefined;
  // The worker seen holding it, and when it was first seen there (for the timeout).
  owner: Worker | undefined;
  startedAt: number | undefined;
  // When it was given to the pool, for its queue timeout; set only when it has one.
  readonly queuedAt: number | undefined;
  // Progress messages handed to onProgress and not yet acknowledged.
  unacked = 0;
  readonly #settle: PromiseWithResolvers<unknown>;
  // The tasks sharing its signal, which it leaves once settled.
  readonly #sharing: Set<Task> | undefined;

  constructor(job: unknown, options: ExecuteOptions, settle: PromiseWithResolvers<unknown>, sharing?: Set<Task>) {
    this.job = job;
    this.options = options;
    this.queuedAt = options.queueTimeout === undefined ? undefined : performance.now();
    this.#settle = settle;
    this.#sharing = sharing;
    sharing?.add(this);
  }

  resolve(result: unknown): void {
    this.#sharing?.delete(this);
    this.#settle.resolve(result);
  }

  reject(error: Error): void {
    this.#sharing?.delete(this);
    this.#settle.reject(error);
  }
}

// A terminated worker still checked for jobs it claimed, from `from` to `until`.
interface DeadWorker {
  worker: Worker;
  reason: Error;
  from: number;
  until: number;
}

/**
 * What {@linkcode ThreadPool.close} found.
 *
 * @example
 * ```ts
 * import type { PoolCloseReport } from "./thread_pool.ts";
 * const report: PoolCloseReport = { stuckThreads: 0 };
 * console.log(report.stuckThreads);
 * ```
 */
export interface PoolCloseReport {
  /** Threads the pool gave up on while they ran synchronous code; see {@linkcode ThreadPool.stuckThreads}. */
  stuckThreads: number;
}

// Whether a job no worker has taken yet has waited past its queue timeout.
function queuedTooLong(task: Task, now: number): boolean {
  return task.queuedAt !== undefined && task.startedAt === undefined &&
    now - task.queuedAt >= task.options.queueTimeout!;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * A fixed number of worker threads (`node:worker_threads`, running module
 * code) taking jobs from one shared queue.
 *
 * A pool that is never closed keeps the process alive: its workers' threads
 * and its sweep timer hold the event loop. Close it with
 * {@linkcode ThreadPool.close}, or make it with `await using` so leaving the
 * block closes it. Loading the worker module needs read access to it
 * (`--allow-read`).
 *
 * @typeParam Job What {@linkcode ThreadPool.execute} sends to a worker.
 * @typeParam Result What the worker's handler returns.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ThreadPool } from "./thread_pool.ts";
 * // tests/fixtures/double_worker.ts runs `runJobs((n: number) => n * 2)`.
 * const url = new URL("../tests/fixtures/double_worker.ts", import.meta.url);
 * await using pool = new ThreadPool<number, number>(2, url);
 * const results = await Promise.all([1, 2, 3].map((n) => pool.execute(n)));
 * assert.ok(results.join() === "2,4,6");
 * ```
 */
export class ThreadPool<Job = unknown, Result = unknown> implements AsyncDisposable {
  readonly #url: URL;
  readonly #options: ResolvedPoolOptions<Job, Result>;
  readonly #channel: JobChannel = new SharedChannel();
  readonly #workers: Worker[] = [];
  readonly #byNumber = new Map<number, Worker>();
  readonly #signals = new WeakMap<AbortSignal, Set<Task>>();
  // Jobs in the shared queue or running, by position.
  readonly #tasks = new Map<number, Task>();
  // Jobs waiting for room in the shared queue, oldest first, from #waitingHead on.
  #waiting: Task[] = [];
  #waitingHead = 0;
  #ready = Promise.withResolvers<void>();
  #started = false;
  #broken: Error | undefined;
  #closing: Promise<PoolCloseReport> | undefined;
  #stuckThreads = 0;
  // By worker id: jobs served by the threads replaced so far, and how many were replaced.
  readonly #servedBefore: number[] = [];
  readonly #restarts: number[] = [];
  // Failed starts in a row, by worker id, for the respawn back-off.
  readonly #failedStarts = new Map<number, number>();
  #closed = false;
  #drained: (() => void) | undefined;
  #dead: DeadWorker[] = [];
  #wakePending = false;
  // The queue's head at the last sweep.
  #lastHead = -1;
  readonly #sweep: ReturnType<typeof setInterval>;
  // Timers for respawning workers that failed to start; cleared on close.
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  // Lets the reply loop yield to the event loop between busy rounds.
  readonly #yield = new MessageChannel();

  /**
   * Starts `size` workers running `url`.
   *
   * @param size How many workers; a positive integer.
   * @param url The worker module, which calls `runJobs` from `pool/run_jobs.ts`.
   * @param options See {@linkcode ThreadPoolOptions}.
   * @throws {RangeError} When `size`, `concurrency` or `maxQueue` is out of range.
   * @throws {TypeError} When `url` is not a URL or string.
   * @throws {DOMException} A `DataCloneError` when `options.data` cannot be structured-cloned.
   */
  constructor(size: number, url: URL | string, options: ThreadPoolOptions<Job, Result> = {}) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`Cannot create pool: size must be a positive integer, got ${size}`);
    }
    if (!(url instanceof URL) && typeof url !== "string") {
      throw new TypeError(`Cannot create pool: url must be a URL or string, got ${typeof url}`);
    }
    this.#url = new URL(url);
    this.#options = { ...DEFAULT_POOL_OPTIONS, ...options } as ResolvedPoolOptions<Job, Result>;
    const { maxQueue, concurrency } = this.#options;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
      throw new RangeError(
        `Cannot create pool: concurrency must be an integer from 1 to ${MAX_CONCURRENCY}, got ${concurrency}`,
      );
    }
    if (maxQueue !== Infinity && (!Number.isInteger(maxQueue) || maxQueue < 0)) {
      throw new RangeError(`Cannot create pool: maxQueue must be a non-negative integer, got ${maxQueue}`);
    }
    // Data that cannot be sent to a worker fails here, at once, with a DataCloneError.
    structuredClone(this.#options.data);
    // A failed start-up is reported through `ready`; this keeps it from being unhandled.
    this.#ready.promise.catch(() => {});
    for (let id = 0; id < size; id++) this.#workers.push(this.#spawn(id));
    this.#sweep = setInterval(() => this.#sweepOnce(), SWEEP_MS);
    this.#collect();
  }

  /** The number of workers. */
  get size(): number {
    return this.#workers.length;
  }

  /** The most jobs one worker runs at once. */
  get concurrency(): number {
    return this.#options.concurrency;
  }

  /** Jobs waiting for a worker. */
  get queued(): number {
    return this.#waiting.length - this.#waitingHead + this.#channel.unclaimed;
  }

  /** Workers alive and ready, busy or idle; equal to `size` except while one is being replaced. */
  get readyWorkers(): number {
    return this.#workers.filter((worker) => worker.state === "ready").length;
  }

  /**
   * Threads this pool has given up on while they ran synchronous code: a
   * worker found stuck, or one that did not stop when closing. Deno cannot
   * stop such a thread (`terminate()` does not interrupt synchronous code),
   * so each may still be running: an endless loop for good, a long
   * `Atomics.wait` until it ends. Only ending the process frees them.
   */
  get stuckThreads(): number {
    return this.#stuckThreads;
  }

  /**
   * What each worker is doing now: its jobs, the oldest one's label and age, what it has served and
   * how often it was replaced; and the queue. Cheap enough to call every second.
   */
  stats(): PoolStats {
    const now = performance.now();
    const workers = this.#workers.map((worker): WorkerStats => {
      const held = worker.state === "dead" ? [] : worker.inflight();
      let oldest: Task | undefined;
      for (const pos of held) {
        const task = this.#tasks.get(pos);
        if (task && (oldest === undefined || (task.startedAt ?? now) < (oldest.startedAt ?? now))) oldest = task;
      }
      const stats: WorkerStats = {
        id: worker.id,
        state: worker.state,
        inflight: held.length,
        served: worker.served + (this.#servedBefore[worker.id] ?? 0),
        restarts: this.#restarts[worker.id] ?? 0,
      };
      if (oldest) stats.oldest = { label: oldest.options.label, ageMs: now - (oldest.startedAt ?? now) };
      return stats;
    });
    return { workers, queued: this.queued, maxQueue: this.#options.maxQueue, stuckThreads: this.#stuckThreads };
  }

  /** Resolves when every worker has started; rejects with {@linkcode WorkerStartError} when one cannot. */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /**
   * Queues a job; a worker with room takes it, an idle one first.
   *
   * @returns The worker's result. Rejects with the handler's error, with
   *   {@linkcode JobTimeoutError}, {@linkcode WorkerCrashError},
   *   {@linkcode WorkerStuckError}, {@linkcode QueueFullError}, the signal's
   *   reason, {@linkcode WorkerStartError} when the pool never started, or
   *   {@linkcode PoolClosedError}.
   */
  execute(job: Job, options: ExecuteOptions = {}): Promise<Result> {
    if (this.#closing) return Promise.reject(new PoolClosedError());
    if (this.#broken) return Promise.reject(this.#broken);
    // A job that a parked worker takes at once never waits, so it does not count against the bound.
    const queued = this.queued;
    const { maxQueue } = this.#options;
    if (queued >= maxQueue && queued >= maxQueue + this.#channel.parkedRoom()) {
      return Promise.reject(new QueueFullError(maxQueue));
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const settle = Promise.withResolvers<unknown>();
    const task = new Task(job, options, settle, signal && this.#sharing(signal));
    // Jobs already waiting go first; the queue may have room for them by now.
    if (this.#waitingHead < this.#waiting.length) this.#pump();
    if (this.#waitingHead < this.#waiting.length || !this.#enqueue(task)) this.#waiting.push(task);
    return settle.promise as Promise<Result>;
  }

  // The tasks carrying `signal`. A signal gets one listener however many jobs carry it (a
  // connection's, say), which cancels those still outstanding when it aborts.
  #sharing(signal: AbortSignal): Set<Task> {
    let tasks = this.#signals.get(signal);
    if (!tasks) {
      const sharing = tasks = new Set<Task>();
      this.#signals.set(signal, sharing);
      signal.addEventListener("abort", () => {
        for (const task of [...sharing]) this.#cancel(task, signal.reason);
      }, { once: true });
    }
    return tasks;
  }

  /**
   * Stops taking jobs, lets queued and running jobs finish, then stops the
   * workers one by one. It always resolves: a worker that does not stop
   * within a second is terminated, and counted in the report when its thread
   * was held by synchronous code. Calling it again returns the same promise.
   */
  close(): Promise<PoolCloseReport> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  /** Same as {@linkcode ThreadPool.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #shutdown(): Promise<PoolCloseReport> {
    if (this.#busy()) await new Promise<void>((resolve) => this.#drained = resolve);
    for (const worker of this.#workers) {
      this.#tell(() => this.#options.onWorkerStop(worker.id));
      if (!await worker.stop()) this.#stuckThreads++;
      this.#channel.close(worker.port);
    }
    clearInterval(this.#sweep);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#closed = true;
    this.#channel.interrupt(); // ends the reply loop's wait
    this.#yield.port1.close();
    this.#yield.port2.close();
    return { stuckThreads: this.#stuckThreads };
  }

  // Whether a job is queued or running that close() should wait for.
  #busy(): boolean {
    return this.#tasks.size > 0 || this.#waitingHead < this.#waiting.length;
  }

  #checkDrained(): void {
    if (this.#drained && !this.#busy()) {
      this.#drained();
      this.#drained = undefined;
    }
  }

  #spawn(id: number): Worker {
    const port = this.#channel.open(this.#options.concurrency);
    const worker = new Worker(id, this.#url, this.#options.name, port, {
      data: this.#options.data,
      queue: this.#channel.buffers,
      resourceLimits: this.#options.resourceLimits,
    }, {
      message: (from, message) => this.#onMessage(from, message),
      ready: () => {
        this.#failedStarts.delete(id);
        if (!this.#started && this.#workers.every((w) => w.state === "ready")) {
          this.#started = true;
          this.#ready.resolve();
        }
        this.#scheduleWake();
      },
      failed: (from, detail, exitCode) => {
        const reason = from.state === "starting"
          ? new WorkerStartError(from.id, detail, undefined, exitCode)
          : new WorkerCrashError(from.id, detail);
        this.#replace(from, reason);
      },
    });
    this.#byNumber.set(port.number, worker);
    return worker;
  }

  // Puts a job in the shared queue; false when the queue has no room now.
  #enqueue(task: Task): boolean {
    const codec = this.#options.codec;
    let pos: number;
    try {
      const size = codec ? codec.jobSize(task.job as Job) : -1;
      pos = size >= 0 && size <= SharedChannel.maxInline
        ? this.#channel.put(size, (into) => codec!.writeJob(task.job as Job, into))
        : this.#channel.put(-1);
    } catch (error) {
      // The job could not be encoded: it fails alone.
      task.reject(asError(error));
      return true;
    }
    if (pos === -1) return false;
    task.pos = pos;
    this.#tasks.set(pos, task);
    this.#scheduleWake();
    return true;
  }

  // Moves waiting jobs into the shared queue while it has room.
  #pump(): void {
    while (this.#waitingHead < this.#waiting.length) {
      if (!this.#enqueue(this.#waiting[this.#waitingHead])) break;
      this.#waiting[this.#waitingHead++] = undefined as unknown as Task;
    }
    if (this.#waitingHead === this.#waiting.length) {
      this.#waiting = [];
      this.#waitingHead = 0;
    } else if (this.#waitingHead > 1024 && this.#waitingHead * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#waitingHead);
      this.#waitingHead = 0;
    }
  }

  // Wakes workers once for all the jobs queued in this turn of the event loop.
  #scheduleWake(): void {
    if (this.#wakePending) return;
    this.#wakePending = true;
    queueMicrotask(() => {
      this.#wakePending = false;
      this.#channel.wake();
    });
  }

  // The main thread's side of the reply rings: collect every reply, then wait for the next.
  async #collect(): Promise<void> {
    while (!this.#closed) {
      const seen = this.#channel.replySignal();
      this.#readReplies();
      const wait = this.#channel.waitForReply(seen);
      if (wait) {
        await wait;
      } else {
        // More replies came meanwhile: take them after the event loop has had its turn.
        await new Promise((resolve) => {
          this.#yield.port2.onmessage = resolve;
          this.#yield.port1.postMessage(null);
        });
      }
    }
  }

  #readReplies(): void {
    this.#channel.takeReplies(this.#onReply);
    this.#pump();
    this.#checkDrained();
  }

  readonly #onReply = (number: number, pos: number, bytes: Uint8Array): void => {
    const worker = this.#byNumber.get(number);
    if (worker) worker.served++;
    const task = this.#remove(pos);
    if (!task) return;
    let result: Result;
    try {
      result = this.#options.codec!.readResult(bytes);
    } catch (error) {
      task.reject(asError(error));
      return;
    }
    task.resolve(result);
  };

  #onMessage(worker: Worker, message: FromWorker): void {
    switch (message.type) {
      case "want": {
        const task = this.#tasks.get(message.seq);
        if (!task || !worker.post({ type: "job", seq: message.seq, job: task.job }, task.options.transfer)) {
          // Settled already, or the job could not be cloned: then it fails, and the worker moves on.
          if (task) this.#settle(message.seq, new DOMException("The job could not be cloned", "DataCloneError"));
          worker.post({ type: "job", seq: message.seq, gone: true });
        }
        break;
      }
      case "result": {
        // Replies already in the ring come first, as the worker wrote them first.
        this.#readReplies();
        worker.served++;
        const task = this.#remove(message.seq);
        if (task) {
          if (message.ok) task.resolve(message.result);
          else task.reject(deserializeError(message.error));
        }
        this.#pump();
        this.#checkDrained();
        break;
      }
      case "progress":
        this.#onProgress(worker, message);
        break;
    }
  }

  #onProgress(worker: Worker, message: ProgressMessage): void {
    const { seq } = message;
    const task = this.#tasks.get(seq);
    if (!task) return;
    task.owner ??= worker;
    // While the consumer holds unacknowledged output, any wait is the consumer's, not the
    // job's: the timeout is paused, and starts afresh once everything has been taken.
    task.unacked++;
    let acked = false;
    const ack = () => {
      if (acked || this.#tasks.get(seq) !== task) return;
      acked = true;
      worker.post({ type: "ack", seq } satisfies ToWorker);
      if (--task.unacked === 0) task.startedAt = performance.now();
    };
    const { onProgress } = task.options;
    if (!onProgress) return ack();
    try {
      onProgress(message.data, ack, () => this.#cancel(task, undefined));
    } catch (error) {
      // The consumer failed: the job fails with its error at once, and its worker drops it.
      this.#drop(task, asError(error), "drop");
    }
  }

  // Takes the job at `pos` out of the jobs in the queue or running, and returns it.
  #remove(pos: number): Task | undefined {
    const task = this.#tasks.get(pos);
    if (task) this.#tasks.delete(pos);
    return task;
  }

  // Rejects the job at `pos` if it is still outstanding.
  #settle(pos: number, reason: Error): void {
    this.#remove(pos)?.reject(reason);
    this.#checkDrained();
  }

  // Fails a running job now and tells its worker to drop it. The worker keeps it
  // on its list until it does, under the job's timeout, so a stuck thread is still found.
  #drop(task: Task, reason: Error, kind: "timeout" | "drop"): void {
    const pos = task.pos!;
    const owner = task.owner ?? this.#ownerOf(pos);
    this.#settle(pos, reason);
    if (!owner) return;
    owner.held.set(pos, task.options.timeout ?? Infinity);
    owner.post({ type: "abort", seq: pos, kind });
  }

  #ownerOf(pos: number): Worker | undefined {
    const port = this.#channel.ownerOf(pos);
    return port && this.#byNumber.get(port.number);
  }

  #cancel(task: Task, reason: unknown): void {
    const error = reason instanceof Error ? reason : new DOMException("The job was cancelled", "AbortError");
    if (task.pos === undefined) {
      const at = this.#waiting.indexOf(task, this.#waitingHead);
      if (at === -1) return;
      this.#waiting.splice(at, 1);
      task.reject(error);
      this.#checkDrained();
      return;
    }
    const pos = task.pos;
    if (this.#tasks.get(pos) !== task) return;
    if (this.#channel.cancel(pos)) {
      this.#settle(pos, error);
      return;
    }
    // Running: its worker aborts its signal, and the job settles as it ends.
    const owner = task.owner ?? this.#ownerOf(pos);
    owner?.post({ type: "abort", seq: pos, kind: "cancel" });
  }

  // The periodic checks: a wake that did not act, dead workers' leftovers, stuck workers, timeouts.
  #sweepOnce(): void {
    const now = performance.now();
    // A ring can go to a worker whose thread is held (by a timer of the app, say): jobs
    // nobody took since the last check get every parked worker rung.
    const head = this.#channel.head;
    if (this.#channel.unclaimed > 0 && head === this.#lastHead) this.#channel.wake(true);
    this.#lastHead = head;
    if (this.#dead.length > 0) {
      this.#dead = this.#dead.filter((dead) => {
        if (now >= dead.from) this.#reap(dead);
        if (now < dead.until) return true;
        this.#channel.forget(dead.worker.port);
        return false;
      });
    }
    for (const worker of this.#workers) {
      if (worker.state === "ready") this.#watch(worker, now);
    }
    this.#expireWaiting(now);
    for (const task of this.#tasks.values()) {
      if (queuedTooLong(task, now)) {
        // A job a worker has taken (its cell can no longer be cancelled) is running, not queued.
        if (this.#channel.cancel(task.pos!)) this.#settle(task.pos!, new QueueTimeoutError(task.options.queueTimeout!));
        continue;
      }
      const { timeout } = task.options;
      if (timeout === undefined || task.startedAt === undefined || task.unacked > 0) continue;
      if (now - task.startedAt < timeout) continue;
      // It may have finished just now.
      this.#channel.takeReplies(this.#onReply);
      if (this.#tasks.get(task.pos!) === task) this.#drop(task, new JobTimeoutError(timeout), "timeout");
    }
  }

  // Drops the jobs still waiting in the main thread (the queue's memory was full) past their queue timeout.
  #expireWaiting(now: number): void {
    const late = (task: Task) => queuedTooLong(task, now);
    let anyLate = false;
    for (let i = this.#waitingHead; i < this.#waiting.length && !anyLate; i++) anyLate = late(this.#waiting[i]);
    if (anyLate) {
      const kept: Task[] = [];
      for (let i = this.#waitingHead; i < this.#waiting.length; i++) {
        const task = this.#waiting[i];
        if (late(task)) task.reject(new QueueTimeoutError(task.options.queueTimeout!));
        else kept.push(task);
      }
      this.#waiting = kept;
      this.#waitingHead = 0;
      this.#checkDrained();
    }
  }

  // Notes which jobs a worker holds and since when, and replaces it if its thread is stuck:
  // its event loop has not turned for as long as the timeouts of all the jobs it holds.
  #watch(worker: Worker, now: number): void {
    const held = worker.inflight();
    const stalled = worker.stalledFor(now);
    let limit = 0;
    for (const pos of held) {
      const task = this.#tasks.get(pos);
      if (task) {
        task.owner ??= worker;
        task.startedAt ??= now;
        limit = Math.max(limit, task.options.timeout ?? Infinity);
      } else {
        limit = Math.max(limit, worker.held.get(pos) ?? 0);
      }
    }
    if (worker.held.size > 0) {
      const still = new Set(held);
      for (const pos of worker.held.keys()) if (!still.has(pos)) worker.held.delete(pos);
    }
    if (held.length > 0 && stalled >= Math.max(limit, MIN_STALL_MS)) {
      // Its jobs past their own timeout fail as timed out; the others because the worker is stuck.
      for (const pos of held) {
        const task = this.#tasks.get(pos);
        const timeout = task?.options.timeout;
        if (timeout !== undefined && now - task!.startedAt! >= timeout) this.#settle(pos, new JobTimeoutError(timeout));
      }
      this.#stuckThreads++;
      this.#replace(worker, new WorkerStuckError(worker.id, stalled, held.length, this.#stuckThreads));
    }
  }

  // Terminates a worker that died, failed to start, or got stuck, fails the jobs it
  // held, and starts a replacement.
  #replace(worker: Worker, reason: Error): void {
    if (this.#workers[worker.id] !== worker || worker.state === "dead") return;
    const wasStarting = worker.state === "starting";
    this.#servedBefore[worker.id] = (this.#servedBefore[worker.id] ?? 0) + worker.served;
    this.#restarts[worker.id] = (this.#restarts[worker.id] ?? 0) + 1;
    worker.terminate();
    this.#channel.close(worker.port);
    this.#byNumber.delete(worker.number);
    for (const pos of this.#channel.recover(worker.port, this.#onDeadReply(worker))) this.#settle(pos, reason);
    const now = performance.now();
    this.#dead.push({ worker, reason, from: now + REAP_DELAY_MS, until: now + REAP_WINDOW_MS });
    if (wasStarting && !this.#started) {
      // A worker that cannot even start would fail again: report it instead of looping,
      // and fail every job, since the pool will never be whole.
      this.#broken = reason;
      this.#ready.reject(reason);
      for (let i = this.#waitingHead; i < this.#waiting.length; i++) this.#waiting[i].reject(reason);
      this.#waiting = [];
      this.#waitingHead = 0;
      for (const pos of [...this.#tasks.keys()]) if (this.#channel.cancel(pos)) this.#settle(pos, reason);
      return;
    }
    if (this.#closing && !this.#busy()) return; // stopping anyway: a fresh worker would outlive close()
    if (wasStarting) {
      // A replacement failed to start (a file briefly unreadable, say): try again later, later
      // still after each failure in a row, while the other workers carry the load.
      const failures = (this.#failedStarts.get(worker.id) ?? 0) + 1;
      this.#failedStarts.set(worker.id, failures);
      const delay = Math.min(RESPAWN_DELAY_MAX_MS, RESPAWN_DELAY_MS * 2 ** (failures - 1));
      if (reason instanceof WorkerStartError) reason.retryInMs = delay;
      this.#tell(() => this.#options.onWorkerReplaced(worker.id, reason));
      this.#later(delay, () => {
        if (this.#workers[worker.id] === worker && !this.#closing) this.#workers[worker.id] = this.#spawn(worker.id);
      });
    } else {
      this.#tell(() => this.#options.onWorkerReplaced(worker.id, reason));
      this.#workers[worker.id] = this.#spawn(worker.id);
    }
    this.#pump();
  }

  // Replies a worker wrote before it died still settle their jobs.
  #onDeadReply(worker: Worker): (pos: number, bytes: Uint8Array) => void {
    return (pos, bytes) => this.#onReply(worker.number, pos, bytes);
  }

  // Settles what a terminated worker left behind in its last moments: replies, and
  // jobs it claimed after it was first recovered.
  #reap(dead: DeadWorker): void {
    for (const pos of this.#channel.recover(dead.worker.port, this.#onDeadReply(dead.worker))) {
      this.#settle(pos, dead.reason);
    }
    this.#pump();
  }

  // Runs `action` after `ms`, unless the pool has closed by then.
  #later(ms: number, action: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      action();
    }, ms);
    this.#timers.add(timer);
  }

  // Calls a user's notification callback; what it throws must not take the pool down.
  #tell(callback: () => void): void {
    try {
      callback();
    } catch {
      // ignored: the callback only observes
    }
  }
}
