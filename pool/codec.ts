/**
 * How jobs and results travel through the pool's shared memory. A pool
 * without a codec sends each job and result by `postMessage` (structured
 * clone); with one, they are written as bytes into the shared queue and the
 * workers' reply rings, which is much cheaper per job. The main thread and
 * the worker module must use the same codec.
 *
 * @module
 */

/**
 * Turns jobs and results into bytes and back. Each `read` gets a private
 * copy of the bytes, so it may keep views of them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { PoolCodec } from "./codec.ts";
 * // Jobs and results that are numbers, as 8 bytes each.
 * const numbers: PoolCodec<number, number> = {
 *   jobSize: () => 8,
 *   writeJob: (job, into) => new DataView(into.buffer, into.byteOffset).setFloat64(0, job),
 *   readJob: (bytes) => new DataView(bytes.buffer, bytes.byteOffset).getFloat64(0),
 *   resultSize: () => 8,
 *   writeResult: (result, into) => new DataView(into.buffer, into.byteOffset).setFloat64(0, result),
 *   readResult: (bytes) => new DataView(bytes.buffer, bytes.byteOffset).getFloat64(0),
 * };
 * const bytes = new Uint8Array(numbers.jobSize(2.5));
 * numbers.writeJob(2.5, bytes);
 * assert.equal(numbers.readJob(bytes), 2.5);
 * ```
 */
export interface PoolCodec<Job, Result> {
  /** Main thread: the encoded size of `job`, in bytes. */
  jobSize(job: Job): number;
  /** Main thread: writes `job` into `into`, which is exactly `jobSize(job)` bytes of shared memory. */
  writeJob(job: Job, into: Uint8Array): void;
  /** Worker: the job back from its bytes. */
  readJob(bytes: Uint8Array): Job;
  /** Worker: the encoded size of `result`, in bytes. */
  resultSize(result: Result): number;
  /** Worker: writes `result` into `into`, which is exactly `resultSize(result)` bytes of shared memory. */
  writeResult(result: Result, into: Uint8Array): void;
  /** Main thread: the result back from its bytes. */
  readResult(bytes: Uint8Array): Result;
}
