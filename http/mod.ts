/**
 * The HTTP/1.1 protocol, without I/O: request framing and parsing, and
 * response serialisation.
 *
 * @example
 * ```ts
 * import { frameRequest } from "./mod.ts";
 * const result = frameRequest(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
 * console.assert(result.type === "complete");
 * ```
 *
 * @module
 */
export * from "./request.ts";
export * from "./response.ts";
