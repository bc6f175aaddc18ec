/**
 * The options of a `ThreadPool` and of one job, with every default
 * in one constant.
 *
 * @module
 */
import type { PoolCodec } from "./codec.ts";

/**
 * Options for `ThreadPool`; each default is in {@linkcode DEFAULT_POOL_OPTIONS}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ThreadPool } from "./thread_pool.ts";
 * import type { ThreadPoolOptions } from "./options.ts";
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
   * The most jobs one worker runs at once (piscina's
   * `concurrentTasksPerWorker`). With 1, a worker runs one job at a time, as
   * a thread does in the book. Higher suits jobs that await (I/O, timers):
   * while one awaits, the worker's thread runs the others. A job that blocks
   * the thread still holds its worker, and the others it holds wait with it.
   * @default {1}
   */
  concurrency?: number;
  /**
   * Limits of each worker's JavaScript engine, as `node:worker_threads`
   * takes them. A worker that reaches its heap limit ends (its jobs fail with
   * `WorkerCrashError`) and is replaced; the process lives on.
   * @default {{}} (V8's own limits)
   */
  resourceLimits?: WorkerResourceLimits;
  /**
   * Most jobs that may wait for a worker; past it `ThreadPool.execute()`
   * rejects at once with `QueueFullError`.
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
   * Called just before each worker is stopped by `ThreadPool.close()`.
   * What it throws is ignored, as for `onWorkerReplaced`.
   * @default {() => {}}
   */
  onWorkerStop?: (id: number) => void;
  /**
   * Called when a worker dies, fails to start again, or gets stuck, and is
   * replaced; `reason` says which (`WorkerCrashError`,
   * `WorkerStartError`, `WorkerStuckError`).
   * @default {() => {}}
   */
  onWorkerReplaced?: (id: number, reason: Error) => void;
}

/**
 * Limits of a worker's JavaScript engine, in MiB, as `node:worker_threads` takes them.
 *
 * @example
 * ```ts
 * import type { WorkerResourceLimits } from "./options.ts";
 * const limits: WorkerResourceLimits = { maxOldGenerationSizeMb: 512 };
 * console.log(limits);
 * ```
 */
export interface WorkerResourceLimits {
  /** The most the worker's long-lived heap may hold. */
  maxOldGenerationSizeMb?: number;
  /** The most the worker's heap of new objects may hold. */
  maxYoungGenerationSizeMb?: number;
}

/** {@linkcode ThreadPoolOptions} with every default filled in; only the codec may stay absent. */
export type ResolvedPoolOptions<Job = unknown, Result = unknown> =
  & Required<Omit<ThreadPoolOptions<Job, Result>, "codec">>
  & Pick<ThreadPoolOptions<Job, Result>, "codec">;

/**
 * Options for one `ThreadPool.execute()` call.
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
   * Milliseconds the job may run once a worker has taken it. Past that the
   * job rejects with `JobTimeoutError`, its `progress.signal`
   * aborts, and its worker drops it and takes other jobs. If the worker's
   * event loop has not turned for as long as the timeouts of all the jobs it
   * holds (synchronous code that does not end), the worker is replaced and
   * its other jobs reject with `WorkerStuckError`. Checked a few
   * times a second, so it may fire up to about a tenth of a second late. The
   * clock is paused while `onProgress` holds unacknowledged messages, and
   * starts afresh when they are all acknowledged. No limit when absent.
   */
  timeout?: number;
  /**
   * Milliseconds the job may wait for a worker to take it. Past that it is
   * dropped and rejects with `QueueTimeoutError`, so a job never waits
   * without a limit (while every worker is busy or failing to start, say).
   * No limit when absent.
   */
  queueTimeout?: number;
  /**
   * Receives what the job sends with `progress.emit`, in order, before the
   * result. Call `ack` once `data` is consumed: the worker waits when too
   * many messages are unacknowledged, and `progress.flush()` resolves when
   * all are. Call `cancel` to cancel the job, as `signal` would. If it
   * throws, the job rejects with that error at once and its worker drops it.
   */
  onProgress?: (data: unknown, ack: () => void, cancel: () => void) => void;
  /**
   * Cancels the job: a queued job is dropped and rejects with the signal's
   * reason; a running job's `progress.signal` aborts and its next `emit`
   * rejects, so it can stop, and it settles as it ends.
   */
  signal?: AbortSignal;
  /** A short description of the job (say `GET /sleep`), shown by {@linkcode PoolStats} while it runs. */
  label?: string;
}

/** What one worker is doing, as {@linkcode PoolStats} shows it. */
export interface WorkerStats {
  /** Its place in the pool, from 0 to size - 1. */
  id: number;
  /** Where its current thread is in its life. */
  state: "starting" | "ready" | "stopping" | "dead";
  /** Jobs its thread holds now (busy when above 0). */
  inflight: number;
  /** The job it has held longest, when it holds any: its label and how long it has run, in milliseconds. */
  oldest?: { label: string | undefined; ageMs: number };
  /** Jobs finished in its place, by this thread and those it replaced. */
  served: number;
  /** Times a thread in its place was replaced (it died, got stuck, or failed to start). */
  restarts: number;
}

/**
 * A snapshot of a pool at work, for metrics and a status page.
 *
 * @example
 * ```ts
 * import type { PoolStats } from "./options.ts";
 * const idle: PoolStats = { workers: [], queued: 0, maxQueue: 10, stuckThreads: 0 };
 * console.log(idle.queued);
 * ```
 */
export interface PoolStats {
  /** Each worker, by id. */
  workers: WorkerStats[];
  /** Jobs waiting for a worker. */
  queued: number;
  /** The bound on waiting jobs. */
  maxQueue: number;
  /** Threads given up on while running code that could not be stopped. */
  stuckThreads: number;
}

/**
 * The default of every {@linkcode ThreadPoolOptions} field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_POOL_OPTIONS } from "./options.ts";
 * assert.equal(DEFAULT_POOL_OPTIONS.concurrency, 1);
 * ```
 */
export const DEFAULT_POOL_OPTIONS: Readonly<ResolvedPoolOptions<unknown, unknown>> = Object.freeze({
  data: undefined,
  codec: undefined,
  name: "worker",
  concurrency: 1,
  resourceLimits: {},
  maxQueue: Infinity,
  onWorkerStop: () => {},
  onWorkerReplaced: () => {},
});

/** The most jobs one worker may run at once: each takes a slot in its shared block. */
export const MAX_CONCURRENCY = 65_536;
