/**
 * Whether an address is a loopback one, for the admin listener's warning.
 *
 * @module
 */

/**
 * Whether `host` is a loopback address (the admin listener warns when it is not).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isLoopback } from "./loopback.ts";
 * assert.ok(isLoopback("127.0.0.1") && isLoopback("::1") && !isLoopback("0.0.0.0"));
 * ```
 */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
