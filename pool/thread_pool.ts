/**
 * A fixed-size pool of module Web Workers fed from one shared queue, after the
 * `ThreadPool` of the book's web server chapter.
 *
 * Theory of operation: every job enters one FIFO queue. A worker is idle once
 * it has reported ready and has no job; whenever a job arrives or a worker
 * becomes idle, the oldest job goes to the worker that has been idle longest.
 * A job therefore never waits behind a busy worker while another is idle.
 * Jobs and results travel by `postMessage`. A worker that dies, or whose job
 * runs past its timeout, is terminated and replaced under the same id, and its
 * job is rejected. Closing lets the queue drain, then stops the workers one by
 * one.
 *
 * @module
 */
import type { FromWorker, SerializedError, ToWorker } from "./_messages.ts";

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
export interface ThreadPoolOptions {
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
   * Called just before each worker is stopped by {@linkcode ThreadPool.close}.
   * @default {() => {}}
   */
  onWorkerStop?: (id: number) => void;
  /**
   * Called when a worker dies or times out and is replaced.
   * @default {() => {}}
   */
  onWorkerReplaced?: (id: number, reason: Error) => void;
}

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
  /** Objects whose ownership moves to the worker with the job. */
  transfer?: Transferable[];
  /**
   * Milliseconds the job may run once a worker has taken it; past that the
   * worker is terminated and replaced, and the job rejects with
   * {@linkcode JobTimeoutError}. The clock is paused while `onProgress` holds
   * unacknowledged messages, and starts afresh when they are all
   * acknowledged. No limit when absent.
   */
  timeout?: number;
  /**
   * Receives what the job sends with `progress.emit`, in order, before the
   * result. Call `ack` once `data` is consumed: the worker waits when too
   * many messages are unacknowledged.
   */
  onProgress?: (data: unknown, ack: () => void) => void;
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
export const DEFAULT_POOL_OPTIONS: Readonly<Required<ThreadPoolOptions>> = Object.freeze({
  data: undefined,
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

interface Task {
  seq: number;
  job: unknown;
  options: ExecuteOptions;
  // Progress messages handed to onProgress and not yet acknowledged.
  unacked?: number;
  resolve(result: unknown): void;
  reject(error: Error): void;
}

// The pool's private record of one thread: the book's `Worker`.
interface Slot {
  id: number;
  worker: Worker;
  ready: boolean;
  task: Task | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
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
  readonly #options: Required<ThreadPoolOptions>;
  readonly #slots: Slot[] = [];
  readonly #idle: Slot[] = [];
  #queue: Task[] = [];
  #queueHead = 0;
  #seq = 0;
  #closing: Promise<void> | undefined;
  #drained: (() => void) | undefined;
  #readyCount = 0;
  #broken: Error | undefined;
  #started = false;
  #ready: PromiseWithResolvers<void> = Promise.withResolvers();

  /**
   * Starts `size` workers running `url`.
   *
   * @param size How many workers; a positive integer.
   * @param url The worker module, which calls `runJobs` from `pool/worker.ts`.
   * @param options See {@linkcode ThreadPoolOptions}.
   * @throws {RangeError} When `size` is not a positive integer.
   * @throws {TypeError} When `url` is not a URL or string.
   */
  constructor(size: number, url: URL | string, options: ThreadPoolOptions = {}) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`Cannot create pool: size must be a positive integer, got ${size}`);
    }
    if (!(url instanceof URL) && typeof url !== "string") {
      throw new TypeError(`Cannot create pool: url must be a URL or string, got ${typeof url}`);
    }
    this.#url = new URL(url);
    this.#options = { ...DEFAULT_POOL_OPTIONS, ...options };
    const { maxQueue } = this.#options;
    if (maxQueue !== Infinity && (!Number.isInteger(maxQueue) || maxQueue < 0)) {
      throw new RangeError(`Cannot create pool: maxQueue must be a non-negative integer, got ${maxQueue}`);
    }
    // A failed start-up is reported through `ready`; this keeps it from being unhandled.
    this.#ready.promise.catch(() => {});
    for (let id = 0; id < size; id++) this.#slots.push(this.#spawn(id));
  }

  /** The number of workers. */
  get size(): number {
    return this.#slots.length;
  }

  /** Jobs waiting for a worker. */
  get queued(): number {
    return this.#queue.length - this.#queueHead;
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
   * Queues a job; it runs on the first idle worker.
   *
   * @returns The worker's result. Rejects with the handler's error, with
   *   {@linkcode JobTimeoutError}, with {@linkcode WorkerCrashError}, with
   *   {@linkcode QueueFullError}, or when the pool is closing.
   */
  execute(job: Job, options: ExecuteOptions = {}): Promise<Result> {
    if (this.#closing) return Promise.reject(new Error("Cannot execute job: pool is closed"));
    if (this.#broken) return Promise.reject(this.#broken);
    // A job that an idle worker takes at once never waits, so it does not count against the bound.
    if (this.queued >= this.#options.maxQueue && this.#idle.length === 0) {
      return Promise.reject(new QueueFullError(this.#options.maxQueue));
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { promise, resolve, reject } = Promise.withResolvers<Result>();
    const task: Task = { seq: this.#seq++, job, options, resolve: resolve as (r: unknown) => void, reject };
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
    this.#queue.push(task);
    this.#dispatch();
    return promise;
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
    if (this.queued > 0 || this.#slots.some((slot) => slot.task)) {
      await new Promise<void>((resolve) => this.#drained = resolve);
    }
    for (const slot of this.#slots) {
      this.#options.onWorkerStop(slot.id);
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
  }

  #spawn(id: number): Slot {
    const worker = new Worker(this.#url, { type: "module", name: `${this.#options.name}-${id}` });
    const slot: Slot = { id, worker, ready: false, task: undefined, timer: undefined, stopped: undefined };
    worker.onmessage = (event: MessageEvent<FromWorker>) => this.#onMessage(slot, event.data);
    worker.onerror = (event: ErrorEvent) => {
      // Keep the error from reaching the main thread's global scope, which would end the process.
      event.preventDefault();
      this.#onCrash(slot, event.message ?? "uncaught error");
    };
    worker.onmessageerror = () => this.#onCrash(slot, "a message could not be deserialized");
    worker.postMessage({ type: "init", id, data: this.#options.data } satisfies ToWorker);
    return slot;
  }

  #onMessage(slot: Slot, message: FromWorker): void {
    if (this.#slots[slot.id] !== slot) return;
    switch (message.type) {
      case "ready":
        slot.ready = true;
        if (++this.#readyCount === this.size && !this.#started) {
          this.#started = true;
          this.#ready.resolve();
        }
        this.#idle.push(slot);
        this.#dispatch();
        break;
      case "setup-failed":
        this.#replace(slot, jobError(message.error));
        break;
      case "result": {
        const task = slot.task;
        if (!task || task.seq !== message.seq) return;
        this.#finish(slot);
        if (message.ok) task.resolve(message.result);
        else task.reject(jobError(message.error));
        this.#idle.push(slot);
        this.#dispatch();
        break;
      }
      case "progress": {
        const task = slot.task;
        if (!task || task.seq !== message.seq) return;
        const { timeout, onProgress } = task.options;
        // While the consumer holds unacknowledged output, any wait is the consumer's, not the
        // job's: the timeout is paused, and starts afresh once everything has been taken.
        clearTimeout(slot.timer);
        slot.timer = undefined;
        task.unacked = (task.unacked ?? 0) + 1;
        let acked = false;
        const ack = () => {
          if (acked || this.#slots[slot.id] !== slot || slot.task !== task) return;
          acked = true;
          slot.worker.postMessage({ type: "ack", seq: task.seq } satisfies ToWorker);
          if (--task.unacked! === 0 && timeout !== undefined) {
            slot.timer = setTimeout(() => this.#replace(slot, new JobTimeoutError(timeout)), timeout);
          }
        };
        if (onProgress) onProgress(message.data, ack);
        else ack();
        break;
      }
      case "stopped":
        slot.stopped?.();
        break;
    }
  }

  #finish(slot: Slot): void {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.task = undefined;
  }

  #onCrash(slot: Slot, detail: string): void {
    this.#replace(slot, new WorkerCrashError(slot.id, detail));
  }

  #replace(slot: Slot, reason: Error): void {
    if (this.#slots[slot.id] !== slot) return;
    slot.worker.terminate();
    const task = slot.task;
    this.#finish(slot);
    const idleAt = this.#idle.indexOf(slot);
    if (idleAt !== -1) this.#idle.splice(idleAt, 1);
    if (!slot.ready && this.#started) {
      // A replacement failed to start (a file briefly unreadable, say): try again shortly,
      // while the other workers carry the load.
      this.#options.onWorkerReplaced(slot.id, reason);
      task?.reject(reason);
      setTimeout(() => {
        if (this.#slots[slot.id] === slot && !this.#closing) this.#slots[slot.id] = this.#spawn(slot.id);
      }, RESPAWN_DELAY_MS);
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
      for (let i = this.#queueHead; i < this.#queue.length; i++) this.#queue[i].reject(this.#broken);
      this.#queue = [];
      this.#queueHead = 0;
      this.#checkDrained();
      return;
    }
    this.#readyCount--;
    task?.reject(reason);
    if (this.#closing && this.queued === 0) {
      // Stopping anyway: a fresh worker would only be stopped again, or outlive close().
      slot.ready = false;
      this.#checkDrained();
      return;
    }
    this.#options.onWorkerReplaced(slot.id, reason);
    this.#slots[slot.id] = this.#spawn(slot.id);
    this.#checkDrained();
  }

  #cancel(task: Task, reason: unknown): void {
    const running = this.#slots.find((slot) => slot.task === task);
    if (running) {
      running.worker.postMessage({ type: "cancel", seq: task.seq } satisfies ToWorker);
      return;
    }
    const at = this.#queue.indexOf(task, this.#queueHead);
    if (at === -1) return;
    this.#queue.splice(at, 1);
    task.reject(reason instanceof Error ? reason : new DOMException("The job was cancelled", "AbortError"));
    this.#checkDrained();
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.queued > 0) {
      const slot = this.#idle.shift()!;
      const task = this.#queue[this.#queueHead];
      this.#queue[this.#queueHead++] = undefined as unknown as Task;
      if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#queueHead);
        this.#queueHead = 0;
      }
      slot.task = task;
      const { timeout, transfer = [] } = task.options;
      if (timeout !== undefined) {
        slot.timer = setTimeout(() => this.#replace(slot, new JobTimeoutError(timeout)), timeout);
      }
      try {
        slot.worker.postMessage({ type: "job", seq: task.seq, job: task.job } satisfies ToWorker, transfer);
      } catch (error) {
        // The job could not be cloned: the worker stays idle, the job fails.
        this.#finish(slot);
        this.#idle.unshift(slot);
        task.reject(error instanceof Error ? error : new Error(String(error)));
      }
    }
    this.#checkDrained();
  }

  #checkDrained(): void {
    if (this.#drained && this.queued === 0 && this.#slots.every((slot) => !slot.task)) {
      this.#drained();
      this.#drained = undefined;
    }
  }
}
