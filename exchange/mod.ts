/**
 * What passes between the server and the handler workers, and the codec that
 * carries it through the pool's shared memory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorResult, RETRY_AFTER } from "./mod.ts";
 * assert.equal(errorResult(503, [RETRY_AFTER]).status, 503);
 * ```
 *
 * @module
 */
export * from "./types.ts";
export * from "./codec.ts";
