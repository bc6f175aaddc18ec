/**
 * The HTTP/1.1 protocol, without I/O: request framing and parsing, and
 * response serialisation.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { frameRequest } from "./mod.ts";
 * const result = frameRequest(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
 * assert.ok(result.type === "complete");
 * ```
 *
 * @module
 */
export * from "./request.ts";
export * from "./response.ts";
export * from "./target.ts";
