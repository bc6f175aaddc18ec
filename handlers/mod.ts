/**
 * The request handlers that run inside the pool's workers: the built-in
 * routes, the static server, `--app` modules, and the job that ties them
 * together. What they exchange with the server is in `exchange/`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SLEEP_MS } from "./mod.ts";
 * assert.equal(SLEEP_MS, 5000);
 * ```
 *
 * @module
 */
export * from "./routes.ts";
export * from "./job.ts";
export * from "./fetch.ts";
export * from "./static.ts";
