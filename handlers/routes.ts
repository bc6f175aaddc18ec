/**
 * The book's routes: `GET /` answers `hello.html`, `GET /sleep` blocks its
 * worker for five seconds first, and anything else gets `404.html`. A root
 * without `hello.html` is served like any folder: `/` is its index (and
 * `/sleep` answers that after its sleep); without `404.html`, a built-in
 * page answers what is not found.
 *
 * Routes run inside a worker, so a route that blocks holds only its own
 * worker; the other workers go on serving.
 *
 * @module
 */
import { errorParts, type ParsedRequest, targetPath } from "../http/mod.ts";
import type { FileBody } from "../exchange/mod.ts";

/** How long `GET /sleep` blocks its worker, as `thread::sleep` does in the book. */
export const SLEEP_MS = 5000;

/** The pages the routes serve, read once when a worker starts. */
export interface Pages {
  /** `hello.html` from the static root; `undefined` when it has none (`/` is then the root's index). */
  hello: Uint8Array | undefined;
  /** `404.html` from the static root, or {@linkcode BUILT_IN_NOT_FOUND} when it has none. */
  notFound: Uint8Array;
}

/**
 * Where `hello.html` names the worker that answered: the built-in `/` replaces this comment with
 * the worker's id, so the book's experiment shows in a browser.
 */
export const WORKER_MARKER = "<!--worker-->";

/** The 404 page of a root without `404.html`. */
export const BUILT_IN_NOT_FOUND: Uint8Array = new TextEncoder().encode(`<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>404 Not Found</title>
  </head>
  <body>
    <h1>404 Not Found</h1>
    <p>There is nothing at this address.</p>
  </body>
</html>
`);

/** What a route answers when the static root's index answers for it (a root without `hello.html`). */
export const ROOT_INDEX: unique symbol = Symbol("the root's index");

/** What a route answers; the worker turns it into response bytes. */
export interface RouteResponse {
  /** The response status. */
  status: number;
  /** Header fields, in order. */
  headers: Array<[string, string]>;
  /** The body bytes. */
  body: Uint8Array;
  /** When set, the body is these bytes of this file instead of `body`. */
  file?: FileBody;
}

/**
 * A route: a function from the request to its response, {@linkcode ROOT_INDEX} when the static root's
 * index answers it, or `undefined` when the path is not its own.
 */
export type Route = (request: ParsedRequest, pages: Pages) => RouteResponse | typeof ROOT_INDEX | undefined;

const HTML: [string, string] = ["Content-Type", "text/html; charset=utf-8"];

/**
 * Blocks the calling thread for `ms` milliseconds without spinning.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sleepSync } from "./routes.ts";
 * const start = performance.now();
 * sleepSync(20);
 * assert.ok(performance.now() - start >= 19);
 * ```
 */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** A built-in route: the answer to a request, from the pages read at start-up. */
export type Handler = (request: ParsedRequest, pages: Pages) => RouteResponse | typeof ROOT_INDEX;

// `/`: hello.html, or the root's index when it has none.
const hello: Handler = (_request, pages) =>
  pages.hello === undefined ? ROOT_INDEX : { status: 200, headers: [HTML], body: pages.hello };

/** The route table: path to handler. GET routes also answer HEAD. */
export const ROUTES: ReadonlyMap<string, Handler> = new Map<string, Handler>([
  ["/", hello],
  ["/sleep", (request, pages) => {
    sleepSync(SLEEP_MS);
    return hello(request, pages);
  }],
]);

/** The fallback when neither a route nor a static file answers. */
export const NOT_FOUND = (_request: ParsedRequest, pages: Pages): RouteResponse => ({
  status: 404,
  headers: [HTML],
  body: pages.notFound,
});

/**
 * Answers a request from the route table. `GET` and `HEAD` reach the routes;
 * another method on a known path gets 405; an unknown path gives `undefined`
 * (the static root and then {@linkcode NOT_FOUND} come next).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRequest } from "../http/mod.ts";
 * import { route } from "./routes.ts";
 * const pages = { hello: new Uint8Array([1]), notFound: new Uint8Array([2]) };
 * const request = parseRequest(new TextEncoder().encode("GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"));
 * assert.equal(route(request, pages), undefined);
 * ```
 */
export function route(request: ParsedRequest, pages: Pages): RouteResponse | typeof ROOT_INDEX | undefined {
  const handler = ROUTES.get(targetPath(request.target));
  if (handler === undefined) return undefined;
  if (request.method !== "GET" && request.method !== "HEAD") {
    return errorParts(405, [["Allow", "GET, HEAD"]]);
  }
  return handler(request, pages);
}
