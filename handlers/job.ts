/**
 * What a worker does with one request: parse the bytes, route, serialise.
 *
 * @module
 */
import { join } from "node:path";
import { errorResponse, HttpError, parseRequest, type RequestLimits, serializeResponse } from "../http/mod.ts";
import type { HandlerJob, HandlerResult } from "./mod.ts";
import { type Pages, type Route, route as builtInRoute } from "./routes.ts";

/**
 * Reads `hello.html` and `404.html` from the static root.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPages } from "./job.ts";
 * const pages = await loadPages(new URL("../static/", import.meta.url).pathname);
 * assert.ok(pages.hello.length > 0 && pages.notFound.length > 0);
 * ```
 */
export async function loadPages(root: string): Promise<Pages> {
  const [hello, notFound] = await Promise.all([
    Deno.readFile(join(root, "hello.html")),
    Deno.readFile(join(root, "404.html")),
  ]);
  return { hello, notFound };
}

/**
 * Answers one framed request with complete response bytes. A request the
 * parser rejects gets its error status and closes the connection.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_LIMITS } from "../http/mod.ts";
 * import { handleJob } from "./job.ts";
 * const pages = { hello: new TextEncoder().encode("hi"), notFound: new Uint8Array() };
 * const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
 * const result = handleJob({ bytes, close: false }, 0, pages, DEFAULT_LIMITS);
 * assert.equal(result.status, 200);
 * ```
 */
export function handleJob(
  job: HandlerJob,
  workerId: number,
  pages: Pages,
  limits: RequestLimits,
  route: Route = builtInRoute,
): HandlerResult {
  let request;
  try {
    request = parseRequest(job.bytes, limits);
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    return { bytes: errorResponse(error.status), status: error.status, workerId, close: true };
  }
  const response = route(request, pages);
  const bytes = serializeResponse({
    ...response,
    omitBody: request.method === "HEAD",
    close: job.close,
    keepAlive: request.version === "HTTP/1.0",
  });
  return { bytes, status: response.status, workerId, close: job.close };
}
