/**
 * The errors a `ThreadPool` rejects jobs with. Callers tell them
 * apart by class, never by message.
 *
 * @module
 */
/** A job that ran past its timeout. It was failed at once; its worker was told to drop it. */
export class JobTimeoutError extends Error {
  /** The timeout that passed, in milliseconds. */
  readonly timeout: number;

  /**
   * A job ran past `timeout` milliseconds.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { JobTimeoutError } from "./errors.ts";
   * const error = new JobTimeoutError(100);
   * assert.equal(error.message, "Job timed out after 100 ms");
   * assert.equal(error.timeout, 100);
   * ```
   */
  constructor(timeout: number) {
    super(`Job timed out after ${timeout} ms`);
    this.name = "JobTimeoutError";
    this.timeout = timeout;
  }
}

/** The queue already holds `maxQueue` jobs; the job was not queued. */
export class QueueFullError extends Error {
  /**
   * `maxQueue` jobs already wait.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { QueueFullError } from "./errors.ts";
   * assert.equal(new QueueFullError(8).message, "Cannot queue job: 8 jobs are already waiting");
   * ```
   */
  constructor(maxQueue: number) {
    super(`Cannot queue job: ${maxQueue} jobs are already waiting`);
    this.name = "QueueFullError";
  }
}

/** The worker running the job died (it threw outside a job, exited, or failed); it was replaced. */
export class WorkerCrashError extends Error {
  /** The id of the worker that died. */
  readonly workerId: number;

  /**
   * Worker `workerId` died; `detail` says how.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerCrashError } from "./errors.ts";
   * assert.equal(new WorkerCrashError(0, "boom").message, "Worker 0 crashed: boom");
   * ```
   */
  constructor(workerId: number, detail: string) {
    super(`Worker ${workerId} crashed: ${detail}`);
    this.name = "WorkerCrashError";
    this.workerId = workerId;
  }
}

/**
 * The worker running the job stopped turning its event loop (synchronous
 * code that does not end) for longer than a timeout of a job it held; it
 * was replaced, and every job it held fails with this error.
 */
export class WorkerStuckError extends Error {
  /** The id of the worker that was replaced. */
  readonly workerId: number;
  /** How long its event loop had not turned, in milliseconds. */
  readonly stalledFor: number;
  /** How many jobs it held. */
  readonly jobs: number;
  /** How many threads its pool has given up on so far, this one included (`ThreadPool.stuckThreads`). */
  readonly stuckThreads: number;

  /**
   * Worker `workerId`'s event loop had not turned for `stalledFor` milliseconds, with `jobs` jobs on
   * it; `stuckThreads` counts the threads its pool has given up on.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerStuckError } from "./errors.ts";
   * assert.equal(
   *   new WorkerStuckError(1, 1020, 3).message,
   *   "Worker 1 is stuck: its event loop has not turned for 1020 ms; 3 jobs in flight on it fail",
   * );
   * ```
   */
  constructor(workerId: number, stalledFor: number, jobs: number, stuckThreads = 1) {
    super(
      `Worker ${workerId} is stuck: its event loop has not turned for ${Math.round(stalledFor)} ms; ` +
        `${jobs} job${jobs === 1 ? "" : "s"} in flight on it fail`,
    );
    this.name = "WorkerStuckError";
    this.workerId = workerId;
    this.stalledFor = stalledFor;
    this.jobs = jobs;
    this.stuckThreads = stuckThreads;
  }
}

/** A worker could not start (its module failed to load, or its setup threw). */
export class WorkerStartError extends Error {
  /** The id of the worker that failed. */
  readonly workerId: number;
  /** Why, as the worker reported it. */
  readonly detail: string;
  /** When a replacement failed to start: how long the pool waits before it tries again, in milliseconds. */
  retryInMs: number | undefined;
  /** The `exitCode` the worker's start-up error carried, if any: the status a program should end with. */
  readonly exitCode: number | undefined;

  /**
   * Worker `workerId` could not start; `detail` says why, `cause` is the error behind it, if any,
   * and `exitCode` the status its start-up error asked for, if it carried one.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WorkerStartError } from "./errors.ts";
   * assert.equal(new WorkerStartError(2, "no such file").message, "Cannot start worker 2: no such file");
   * ```
   */
  constructor(workerId: number, detail: string, cause?: unknown, exitCode?: number) {
    super(`Cannot start worker ${workerId}: ${detail}`, { cause });
    this.name = "WorkerStartError";
    this.workerId = workerId;
    this.detail = detail;
    this.exitCode = exitCode;
  }
}

/** A job waited in the queue longer than its `queueTimeout`, and was dropped without running. */
export class QueueTimeoutError extends Error {
  /** The limit that passed, in milliseconds. */
  readonly timeout: number;

  /**
   * A job waited more than `timeout` milliseconds for a worker.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { QueueTimeoutError } from "./errors.ts";
   * assert.equal(new QueueTimeoutError(500).message, "Job waited more than 500 ms for a worker");
   * ```
   */
  constructor(timeout: number) {
    super(`Job waited more than ${timeout} ms for a worker`);
    this.name = "QueueTimeoutError";
    this.timeout = timeout;
  }
}

/** `ThreadPool.execute()` was called after `close()`. */
export class PoolClosedError extends Error {
  /**
   * The pool was closed before the job was given to it.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PoolClosedError } from "./errors.ts";
   * assert.equal(new PoolClosedError().message, "Cannot execute job: pool is closed");
   * ```
   */
  constructor() {
    super("Cannot execute job: pool is closed");
    this.name = "PoolClosedError";
  }
}
