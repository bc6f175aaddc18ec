/**
 * Request-target helpers (RFC 9112 section 3.2), without I/O.
 *
 * @module
 */

/**
 * The path of a request target: origin-form or absolute-form, query removed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { targetPath } from "./target.ts";
 * assert.ok(targetPath("/sleep?x=1") === "/sleep");
 * assert.ok(targetPath("http://example.com/a") === "/a");
 * assert.ok(targetPath("http://example.com") === "/");
 * ```
 */
export function targetPath(target: string): string {
  let path = target;
  if (path.charCodeAt(0) !== 0x2f) {
    const afterScheme = path.indexOf("://");
    const slash = afterScheme === -1 ? -1 : path.indexOf("/", afterScheme + 3);
    path = slash === -1 ? "/" : path.slice(slash);
  }
  const query = path.search(/[?#]/);
  return query === -1 ? path : path.slice(0, query);
}
