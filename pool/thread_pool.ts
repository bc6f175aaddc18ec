/**
 * A fixed-size pool of module Web Workers fed from one shared queue, after the
 * `ThreadPool` of the book's web server chapter.
 *
 * Theory of operation: every job enters one FIFO queue in shared memory
 * (`_shared.ts`), and each worker takes the oldest job whenever it is free,
 * as the book's workers take jobs from one channel. A job therefore never
 * waits behind a busy worker while another is idle, and a busy pool needs no
 * round trip per job: a worker goes from one job to the next on its own, and
 * the main thread collects many results per wake-up.
 *
 * With a {@linkcode PoolCodec}, jobs and results travel as bytes in shared
 * memory; without one (or when too large), the queue carries only the job's
 * place and the payloads travel by `postMessage`. Progress, cancellation and
 * errors always travel by message. When the queue's memory is full, jobs wait
 * in a list in the main thread, in order.
 *
 * A worker that dies, or whose job runs past its timeout, is terminated and
 * replaced under the same id, and its job is rejected. Closing lets the queue
 * drain, then stops the workers one by one.
 *
 * @module
 */
import type { FromWorker, SerializedError, ToWorker } from "./_messages.ts";
import { JobQueue, ReplyRing, RunningJob } from "./_shared.ts";
import type { PoolCodec } from "./codec.ts";

/**
 * Options for {@linkcode ThreadPool}; each default is in {@linkcode DEFAULT_POOL_OPTIONS}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ThreadPool, type ThreadPoolOptions } from "./thread_pool.ts";
 * const stopped: number[] = [];
 * const options: ThreadPoolOptions = { name: "doubler", onWorkerStop: (id) => stopped.push(id) };
 * const pool = new ThreadPool(2, new URL("../tests/fixtures/double_worker.ts", import.meta.url), options);
 * await pool.close();
 * assert.deepEqual(stopped, [0, 1]);
 * ```
 */
export interface ThreadPoolOptions<Job = unknown, Result = unknown> {
  /**
   * Sent once to every worker (structured-cloned) and given to its setup.
   * @default {undefined}
   */
  data?: unknown;
  /**
   * Prefix of each worker's name (`name` of `new Worker`), followed by its id.
   * @default {"worker"}
   */
  name?: string;
  /**
   * Most jobs that may wait for a worker; past it {@linkcode ThreadPool.execute}
   * rejects at once with {@linkcode QueueFullError}.
   * @default {Infinity}
   */
  maxQueue?: number;
  /**
   * Encodes jobs and results as bytes in shared memory, the fast path; the
   * worker module must pass the same codec to `runJobs`. Without one, jobs
   * and results are structured-cloned through `postMessage`.
   * @default {undefined}
   */
  codec?: PoolCodec<Job, Result>;
  /**
   * Called just before each worker is stopped by {@linkcode ThreadPool.close}.
   * What it throws is ignored, as for `onWorkerReplaced`.
   * @default {() => {}}
   */
  onWorkerStop?: (id: number) => void;
  /**
   * Called when a worker dies or times out and is replaced.
   * @default {() => {}}
   */
  onWorkerReplaced?: (id: number, reason: Error) => void;
}

// The options with every default filled in; only the codec may stay absent.
type ResolvedOptions<Job, Result> =
  & Required<Omit<ThreadPoolOptions<Job, Result>, "codec">>
  & Pick<ThreadPoolOptions<Job, Result>, "codec">;

/**
 * Options for one {@linkcode ThreadPool.execute} call.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ThreadPool } from "./thread_pool.ts";
 * await using pool = new ThreadPool<number, number>(1, new URL("../tests/fixtures/double_worker.ts", import.meta.url));
 * assert.equal(await pool.execute(5, { timeout: 10_000 }), 10);
 * ```
 */
export interface ExecuteOptions {
  /** Objects whose ownership moves to the worker with the job, when it travels by message. */
  transfer?: Transferable[];
  /**
   * Milliseconds the job may run once a worker has taken it; past that the
   * worker is terminated and replaced, and the job rejects with
   * {@linkcode JobTimeoutError}. Checked a few times a second, so it may
   * fire up to about a tenth of a second late. The clock is paused while `onProgress` holds
   * unacknowledged messages, and starts afresh when they are all
   * acknowledged. No limit when absent.
   */
  timeout?: number;
  /**
   * Receives what the job sends with `progress.emit`, in order, before the
   * result. Call `ack` once `data` is consumed: the worker waits when too
   * many messages are unacknowledged. Call `cancel` to cancel the job, as
   * `signal` would, once its output is no longer wanted.
   */
  onProgress?: (data: unknown, ack: () => void, cancel: () => void) => void;
  /**
   * Cancels the job: a queued job is dropped and rejects with the signal's
   * reason; a running job's next `progress.emit` rejects, so it can stop.
   */
  signal?: AbortSignal;
}

/**
 * The default of every {@linkcode ThreadPoolOptions} field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_POOL_OPTIONS } from "./thread_pool.ts";
 * assert.equal(DEFAULT_POOL_OPTIONS.name, "worker");
 * ```
 */
export const DEFAULT_POOL_OPTIONS: Readonly<ResolvedOptions<unknown, unknown>> = Object.freeze({
  data: undefined,
  codec: undefined,
  name: "worker",
  maxQueue: Infinity,
  onWorkerStop: () => {},
  onWorkerReplaced: () => {},
});

/** A job that ran past its timeout; its worker was replaced. */
export class JobTimeoutError extends Error {
  /**
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { JobTimeoutError } from "./thread_pool.ts";
   * assert.ok(new JobTimeoutError(100).name === "JobTimeoutError");
   * ```
   */
  constructor(ms: number) {
    super(`Job timed out after ${ms} ms`);
    this.name = "JobTimeoutError";
  }
}

/** The queue already holds `maxQueue` jobs; the job was not queued. */
export class QueueFullError extends Error {
  /**
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { QueueFullError } from "./thread_pool.ts";
   * assert.equal(new QueueFullError(8).message, "Cannot queue job: 8 jobs are already waiting");
   * ```
   */
  constructor(maxQueue: number) {
    super(`Cannot queue job: ${maxQueue} jobs are already waiting`);
    this.name = "QueueFullError";
  }
}

/** A worker that died while running a job; it was replaced. */
export class WorkerCrashError extends Error {
  /**
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerCrashError } from "./thread_pool.ts";
   * assert.ok(new WorkerCrashError(0, "boom").message === "Worker 0 crashed: boom");
   * ```
   */
  constructor(id: number, detail: string) {
    super(`Worker ${id} crashed: ${detail}`);
    this.name = "WorkerCrashError";
  }
}

// After a replacement worker fails to start, wait this long before trying again.
const RESPAWN_DELAY_MS = 1000;
// How often the pool checks running jobs against their timeouts, terminated workers
// for jobs they left, and the queue for jobs no woken worker took.
const SWEEP_MS = 50;
// After a worker is terminated, wait this long (it stops within microseconds)
// before settling jobs it may have claimed in its last moments.
const REAP_DELAY_MS = 100;
// And keep checking it this long: a thread the system left waiting midway through
// a claim may still complete it after that.
const REAP_WINDOW_MS = 5000;

// A terminated worker still checked for jobs it claimed, from `from` to `until`.
interface DeadWorker {
  slot: Slot;
  reason: Error;
  from: number;
  until: number;
  // The position it was seen half-claiming at the previous check, if any.
  halfClaimed?: number;
}

interface Task {
  job: unknown;
  options: ExecuteOptions;
  // Its position in the shared queue, once it is there.
  pos?: number;
  // When a worker was first seen running it, for the timeout.
  startedAt?: number;
  // Progress messages handed to onProgress and not yet acknowledged.
  unacked?: number;
  // onProgress threw: the job has been rejected, and only waits for its worker to be free.
  failed?: boolean;
  resolve(result: unknown): void;
  reject(error: Error): void;
}

// The pool's private record of one thread: the book's `Worker`.
interface Slot {
  id: number;
  // Unique among all workers this pool has started; cells taken by this worker carry it.
  number: number;
  worker: Worker;
  ready: boolean;
  // Whether the worker was sent its `init` (it asks once its module has loaded).
  initSent: boolean;
  dead: boolean;
  running: RunningJob;
  replies: ReplyRing;
  stopped: (() => void) | undefined;
}

function jobError(error: SerializedError): Error {
  const out = new Error(error.message);
  out.name = error.name;
  if (error.stack) out.stack = error.stack;
  return out;
}

/**
 * A fixed number of module Web Workers taking jobs from one shared queue.
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
  readonly #options: ResolvedOptions<Job, Result>;
  readonly #slots: Slot[] = [];
  readonly #queue = new JobQueue();
  // Jobs in the shared queue or running, by position.
  readonly #inQueue = new Map<number, Task>();
  // Jobs waiting for room in the shared queue, oldest first, from #waitingHead on.
  #waiting: Task[] = [];
  #waitingHead = 0;
  #workerNumbers = 0;
  #closing: Promise<void> | undefined;
  #closed = false;
  #drained: (() => void) | undefined;
  #readyCount = 0;
  #broken: Error | undefined;
  #started = false;
  #ready: PromiseWithResolvers<void> = Promise.withResolvers();
  readonly #sweep: ReturnType<typeof setInterval>;
  // Timers for respawning workers that failed to start; cleared on close.
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #dead: DeadWorker[] = [];
  // Tasks in #inQueue already rejected (their onProgress threw), waiting for their worker.
  #failedTasks = 0;
  #wakePending = false;
  // The queue's head at the last timeout sweep.
  #lastHead = -1;
  // Lets the reply loop yield to the event loop between busy rounds.
  readonly #yield: MessageChannel;

  /**
   * Starts `size` workers running `url`.
   *
   * @param size How many workers; a positive integer.
   * @param url The worker module, which calls `runJobs` from `pool/worker.ts`.
   * @param options See {@linkcode ThreadPoolOptions}.
   * @throws {RangeError} When `size` is not a positive integer.
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
    this.#options = { ...DEFAULT_POOL_OPTIONS, ...options } as ResolvedOptions<Job, Result>;
    const { maxQueue } = this.#options;
    if (maxQueue !== Infinity && (!Number.isInteger(maxQueue) || maxQueue < 0)) {
      throw new RangeError(`Cannot create pool: maxQueue must be a non-negative integer, got ${maxQueue}`);
    }
    // Data that cannot be sent to a worker fails here, at once, with a DataCloneError.
    structuredClone(this.#options.data);
    // A failed start-up is reported through `ready`; this keeps it from being unhandled.
    this.#ready.promise.catch(() => {});
    this.#yield = new MessageChannel();
    for (let id = 0; id < size; id++) this.#slots.push(this.#spawn(id));
    this.#sweep = setInterval(() => this.#sweepOnce(), SWEEP_MS);
    this.#collect();
  }

  /** The number of workers. */
  get size(): number {
    return this.#slots.length;
  }

  /** Jobs waiting for a worker. */
  get queued(): number {
    return this.#waiting.length - this.#waitingHead + this.#queue.unclaimed;
  }

  /** Workers alive and ready, busy or idle; equal to `size` except while one is being replaced. */
  get readyWorkers(): number {
    return this.#slots.filter((slot) => slot.ready).length;
  }

  /** Resolves when every worker has started; rejects when one fails to start. */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /**
   * Queues a job; the first free worker takes it.
   *
   * @returns The worker's result. Rejects with the handler's error, with
   *   {@linkcode JobTimeoutError}, with {@linkcode WorkerCrashError}, with
   *   {@linkcode QueueFullError}, or when the pool is closing.
   */
  execute(job: Job, options: ExecuteOptions = {}): Promise<Result> {
    if (this.#closing) return Promise.reject(new Error("Cannot execute job: pool is closed"));
    if (this.#broken) return Promise.reject(this.#broken);
    // A job that a waiting worker takes at once never waits, so it does not count against the bound.
    const queued = this.queued;
    if (queued >= this.#options.maxQueue && queued >= this.#options.maxQueue + this.#sleepingWorkers()) {
      return Promise.reject(new QueueFullError(this.#options.maxQueue));
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { promise, resolve, reject } = Promise.withResolvers<Result>();
    const task: Task = { job, options, resolve: resolve as (r: unknown) => void, reject };
    if (signal) {
      const onAbort = () => this.#cancel(task, signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      task.resolve = (result) => {
        signal.removeEventListener("abort", onAbort);
        resolve(result as Result);
      };
      task.reject = (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      };
    }
    // Jobs already waiting go first; the queue may have room for them by now.
    if (this.#waitingHead < this.#waiting.length) this.#pump();
    if (this.#waitingHead < this.#waiting.length || !this.#enqueue(task)) this.#waiting.push(task);
    return promise;
  }

  // Workers waiting for a job, among those alive.
  #sleepingWorkers(): number {
    let count = 0;
    for (const slot of this.#slots) if (!slot.dead && slot.running.sleeping) count++;
    return count;
  }

  // Wakes as many sleeping workers as there are new jobs, once for all the jobs queued in
  // this turn of the event loop. A worker terminated while it slept may still be
  // registered as waiting until its thread is gone, and a wake may go to it: one more
  // wake for each such worker.
  #scheduleWake(): void {
    if (this.#wakePending) return;
    this.#wakePending = true;
    queueMicrotask(() => {
      this.#wakePending = false;
      this.#wake();
    });
  }

  #wake(): void {
    const sleeping = this.#sleepingWorkers();
    if (sleeping > 0) this.#queue.wakeWorkers(Math.min(sleeping, this.#queue.unclaimed) + this.#dead.length);
  }

  /**
   * Stops taking jobs, lets queued and running jobs finish, then stops the
   * workers one by one. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  /** Same as {@linkcode ThreadPool.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #shutdown(): Promise<void> {
    if (this.#busy()) await new Promise<void>((resolve) => this.#drained = resolve);
    for (const slot of this.#slots) {
      this.#tell(() => this.#options.onWorkerStop(slot.id));
      if (slot.ready) {
        const stopped = new Promise<void>((resolve) => slot.stopped = resolve);
        slot.worker.postMessage({ type: "stop" } satisfies ToWorker);
        // A worker that does not confirm within a second is terminated anyway.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([stopped, new Promise((resolve) => timer = setTimeout(resolve, 1000))]);
        clearTimeout(timer);
      }
      slot.worker.terminate();
    }
    clearInterval(this.#sweep);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#closed = true;
    this.#queue.signalReply(); // ends the reply loop's wait
    this.#yield.port1.close();
    this.#yield.port2.close();
  }

  // Whether a job is queued or running that close() should wait for. One already rejected
  // is not waited for: close() stops its worker as it stops the others.
  #busy(): boolean {
    return this.#inQueue.size > this.#failedTasks || this.#waitingHead < this.#waiting.length;
  }

  // Takes the job at `pos` out of the jobs in the queue or running, and returns it.
  #remove(pos: number): Task | undefined {
    const task = this.#inQueue.get(pos);
    if (!task) return undefined;
    this.#inQueue.delete(pos);
    if (task.failed) this.#failedTasks--;
    return task;
  }

  #spawn(id: number): Slot {
    const worker = new Worker(this.#url, { type: "module", name: `${this.#options.name}-${id}` });
    const running = new RunningJob();
    const slot: Slot = {
      id,
      number: this.#workerNumbers++,
      worker,
      ready: false,
      initSent: false,
      dead: false,
      running,
      replies: new ReplyRing(running.buffer),
      stopped: undefined,
    };
    worker.onmessage = (event: MessageEvent<FromWorker>) => this.#onMessage(slot, event.data);
    worker.onerror = (event: ErrorEvent) => {
      // Keep the error from reaching the main thread's global scope, which would end the process.
      event.preventDefault();
      this.#onCrash(slot, event.message ?? "uncaught error");
    };
    worker.onmessageerror = () => this.#onCrash(slot, "a message could not be deserialized");
    return slot;
  }

  // Sends a worker its identity, data and shared memory, once its module listens.
  #init(slot: Slot): void {
    try {
      slot.worker.postMessage(
        {
          type: "init",
          id: slot.id,
          worker: slot.number,
          data: this.#options.data,
          queue: this.#queue.buffers,
          running: slot.running.buffer,
        } satisfies ToWorker,
      );
    } catch (error) {
      // It cannot be told who it is (the constructor checked that the data clones): it is
      // replaced as if it had crashed, rather than the error escaping from a message handler.
      this.#replace(slot, error instanceof Error ? error : new Error(String(error)));
    }
  }

  // Puts a job in the shared queue; false when the queue has no room now.
  #enqueue(task: Task): boolean {
    const codec = this.#options.codec;
    let pos: number;
    try {
      const size = codec ? codec.jobSize(task.job as Job) : -1;
      pos = size >= 0 && size <= JobQueue.maxInline
        ? this.#queue.publishWith(size, (into) => codec!.writeJob(task.job as Job, into))
        : this.#queue.publishWith(-1);
    } catch (error) {
      // The job could not be encoded: it fails alone.
      task.reject(error instanceof Error ? error : new Error(String(error)));
      return true;
    }
    if (pos === -1) return false;
    task.pos = pos;
    this.#inQueue.set(pos, task);
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

  // The main thread's side of the reply rings: collect every reply, then wait for the next.
  async #collect(): Promise<void> {
    while (!this.#closed) {
      const seen = this.#queue.replySignal();
      this.#readReplies();
      const wait = this.#queue.waitForReply(seen);
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
    for (const slot of this.#slots) slot.replies.read(this.#onReply);
    this.#pump();
    this.#checkDrained();
  }

  readonly #onReply = (pos: number, _kind: number, bytes: Uint8Array): void => {
    const task = this.#remove(pos);
    if (!task) return;
    let result: Result;
    try {
      result = this.#options.codec!.readResult(bytes);
    } catch (error) {
      task.reject(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    task.resolve(result);
  };

  #onMessage(slot: Slot, message: FromWorker): void {
    // A replaced worker's last result still counts if its job has not been settled.
    if (this.#slots[slot.id] !== slot && message.type !== "result") return;
    switch (message.type) {
      case "loaded":
        // Only the first: a module that called runJobs twice gets one identity.
        if (slot.initSent) break;
        slot.initSent = true;
        this.#init(slot);
        break;
      case "ready":
        if (slot.ready) break;
        slot.ready = true;
        if (++this.#readyCount === this.size && !this.#started) {
          this.#started = true;
          this.#ready.resolve();
        }
        break;
      case "setup-failed":
        this.#replace(slot, jobError(message.error));
        break;
      case "want": {
        const task = this.#inQueue.get(message.seq);
        if (!task) {
          slot.worker.postMessage({ type: "job", seq: message.seq, gone: true } satisfies ToWorker);
          break;
        }
        try {
          slot.worker.postMessage(
            { type: "job", seq: message.seq, job: task.job } satisfies ToWorker,
            task.options.transfer ?? [],
          );
        } catch (error) {
          // The job could not be cloned: it fails, and the worker moves on.
          this.#settle(message.seq, error instanceof Error ? error : new Error(String(error)));
          slot.worker.postMessage({ type: "job", seq: message.seq, gone: true } satisfies ToWorker);
        }
        break;
      }
      case "result": {
        // Replies already in the ring come first, as the worker wrote them first.
        this.#readReplies();
        const task = this.#remove(message.seq);
        if (!task) return;
        if (message.ok) task.resolve(message.result);
        else task.reject(jobError(message.error));
        this.#pump();
        this.#checkDrained();
        break;
      }
      case "progress": {
        const task = this.#inQueue.get(message.seq);
        if (!task || task.failed) return;
        const { onProgress } = task.options;
        // While the consumer holds unacknowledged output, any wait is the consumer's, not the
        // job's: the timeout is paused, and starts afresh once everything has been taken.
        task.unacked = (task.unacked ?? 0) + 1;
        let acked = false;
        const ack = () => {
          if (acked || task.failed || this.#slots[slot.id] !== slot || this.#inQueue.get(message.seq) !== task) return;
          acked = true;
          slot.worker.postMessage({ type: "ack", seq: message.seq } satisfies ToWorker);
          if (--task.unacked! === 0) task.startedAt = performance.now();
        };
        if (!onProgress) {
          ack();
          break;
        }
        try {
          onProgress(message.data, ack, () => this.#cancel(task, undefined));
        } catch (error) {
          // The consumer failed: the job fails with its error at once, and the worker is told
          // to stop. The job stays counted until its worker is free, so its timeout still applies.
          const reject = task.reject;
          task.failed = true;
          this.#failedTasks++;
          task.resolve = task.reject = () => {};
          task.startedAt = performance.now();
          this.#cancel(task, undefined);
          reject(error instanceof Error ? error : new Error(String(error)));
          this.#checkDrained();
        }
        break;
      }
      case "stopped":
        slot.stopped?.();
        break;
    }
  }

  // Rejects the job at `pos` if it is still outstanding.
  #settle(pos: number, reason: Error): void {
    this.#remove(pos)?.reject(reason);
  }

  // The periodic checks: a wake that did not act, terminated workers, timeouts.
  #sweepOnce(): void {
    const now = performance.now();
    // A wake can be slow to act: a worker counted as sleeping may have its thread held
    // (by a timer of the app, say). Jobs that no worker took since the last check get
    // every sleeping worker woken.
    const head = this.#queue.head;
    if (this.#queue.unclaimed > 0 && head === this.#lastHead) {
      this.#queue.wakeWorkers(this.#sleepingWorkers() + this.#dead.length);
    }
    this.#lastHead = head;
    if (this.#dead.length > 0) {
      this.#dead = this.#dead.filter((dead) => {
        if (now >= dead.from) this.#reap(dead);
        return now < dead.until;
      });
    }
    for (const slot of this.#slots) {
      const pos = slot.ready ? slot.running.current : undefined;
      if (pos === undefined) continue;
      const task = this.#inQueue.get(pos);
      const timeout = task?.options.timeout;
      if (!task || timeout === undefined) continue;
      task.startedAt ??= now;
      if ((task.unacked && !task.failed) || now - task.startedAt < timeout) continue;
      // It may have finished just now.
      slot.replies.read(this.#onReply);
      if (this.#inQueue.get(pos) === task) this.#replace(slot, new JobTimeoutError(timeout), pos);
    }
  }

  #onCrash(slot: Slot, detail: string): void {
    this.#replace(slot, new WorkerCrashError(slot.id, detail));
  }

  // Terminates a worker that died, failed to start, or ran past a timeout (`timedOut` is
  // then the position of the job that did), settles its jobs, and starts a replacement.
  #replace(slot: Slot, reason: Error, timedOut?: number): void {
    if (this.#slots[slot.id] !== slot || slot.dead) return;
    slot.running.retire();
    slot.worker.terminate();
    slot.dead = true;
    // Replies it wrote before it stopped stand; the job it was running fails. A worker that
    // timed out may have moved on to another job in its last instant: that one fails too,
    // as a crash, since it never had its chance.
    slot.replies.read(this.#onReply);
    if (timedOut !== undefined) this.#settle(timedOut, reason);
    const orphaned = timedOut === undefined
      ? reason
      : new WorkerCrashError(slot.id, "stopped because its previous job timed out");
    const current = slot.running.current;
    if (current !== undefined) this.#settle(current, orphaned);
    const now = performance.now();
    this.#dead.push({ slot, reason: orphaned, from: now + REAP_DELAY_MS, until: now + REAP_WINDOW_MS });
    if (!slot.ready && this.#started) {
      // A replacement failed to start (a file briefly unreadable, say): try again shortly,
      // while the other workers carry the load.
      this.#tell(() => this.#options.onWorkerReplaced(slot.id, reason));
      this.#later(RESPAWN_DELAY_MS, () => {
        if (this.#slots[slot.id] === slot && !this.#closing) this.#slots[slot.id] = this.#spawn(slot.id);
      });
      this.#checkDrained();
      return;
    }
    if (!slot.ready) {
      // A worker that cannot even start would fail again: report it instead of looping,
      // and fail every job, since the pool will never be whole.
      this.#broken = new Error(
        `Cannot start worker ${slot.id}: ${reason.message.replace(/^Worker \d+ crashed: /, "")}`,
      );
      this.#ready.reject(this.#broken);
      for (let i = this.#waitingHead; i < this.#waiting.length; i++) this.#waiting[i].reject(this.#broken);
      this.#waiting = [];
      this.#waitingHead = 0;
      for (const [queued] of this.#inQueue) {
        if (this.#queue.cancel(queued)) this.#settle(queued, this.#broken);
      }
      this.#checkDrained();
      return;
    }
    slot.ready = false;
    this.#readyCount--;
    if (this.#closing && !this.#busy()) {
      // Stopping anyway: a fresh worker would only be stopped again, or outlive close().
      this.#checkDrained();
      return;
    }
    this.#tell(() => this.#options.onWorkerReplaced(slot.id, reason));
    this.#slots[slot.id] = this.#spawn(slot.id);
    this.#checkDrained();
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

  // Settles what a terminated worker left behind: replies written in its last
  // moments, the job it was running, and a job it was claiming but had not yet
  // copied out, whose cell is freed so the queue does not stall behind it. A
  // worker claims one job at a time and records it first, so those two
  // positions are all it can hold.
  #reap(dead: DeadWorker): void {
    const { slot, reason } = dead;
    slot.replies.read(this.#onReply);
    const current = slot.running.current;
    if (current !== undefined) {
      this.#queue.abandon(current, slot.number, slot.running);
      this.#settle(current, reason);
    }
    const claiming = slot.running.claiming;
    if (this.#inQueue.has(claiming)) {
      // A cell half-claimed at two checks in a row is this worker's: a live worker
      // finishes its claim within an instant.
      const half = this.#queue.halfClaimed(claiming, slot.running);
      const confirmed = half && dead.halfClaimed === claiming;
      dead.halfClaimed = half ? claiming : undefined;
      if (this.#queue.abandon(claiming, slot.number, slot.running, confirmed)) this.#settle(claiming, reason);
    }
    this.#pump();
    this.#checkDrained();
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
    if (this.#inQueue.get(pos) !== task) return;
    if (this.#queue.cancel(pos)) {
      this.#settle(pos, error);
      this.#checkDrained();
      return;
    }
    const number = this.#queue.takenBy(pos);
    const running = this.#slots.find((slot) => slot.running.current === pos || slot.number === number);
    running?.worker.postMessage({ type: "cancel", seq: pos } satisfies ToWorker);
  }

  #checkDrained(): void {
    if (this.#drained && !this.#busy()) {
      this.#drained();
      this.#drained = undefined;
    }
  }
}
