/**
 * The request handlers that run inside the pool's workers: the built-in
 * routes, the static server, `--app` modules, and the job that ties them
 * together. What they exchange with the server is in `exchange/`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { targetPath } from "./mod.ts";
 * assert.ok(targetPath("/?q") === "/");
 * ```
 *
 * @module
 */
export * from "./routes.ts";
export * from "./job.ts";
export * from "./fetch.ts";
export * from "./static.ts";
