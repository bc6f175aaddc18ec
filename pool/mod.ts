/**
 * A fixed-size pool of module Web Workers with one shared job queue.
 *
 * The main thread creates a {@linkcode ThreadPool} with a worker module; the
 * worker module calls {@linkcode runJobs} with the function that does a job.
 * Each worker runs up to `concurrency` jobs at once (1 by default).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ThreadPool } from "./mod.ts";
 * const url = new URL("../tests/fixtures/double_worker.ts", import.meta.url);
 * await using pool = new ThreadPool<number, number>(1, url);
 * assert.ok((await pool.execute(21)) === 42);
 * ```
 *
 * @module
 */
export * from "./thread_pool.ts";
export * from "./options.ts";
export * from "./run_jobs.ts";
export * from "./codec.ts";
export * from "./errors.ts";
