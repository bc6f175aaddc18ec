/**
 * What a worker does with one request: parse the bytes, then answer from the
 * `--app` module, or from the built-in app (the book's routes, then the
 * static root, then `404.html`), and turn the answer into bytes.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { errorResponse, HttpError, parseRequest, serializeResponse } from "../http/mod.ts";
import type { JobProgress } from "../pool/run_jobs.ts";
import { type App, Completion, isApp, type ServeInfo, toRequest, trackResponseBodies, writeResponse } from "./fetch.ts";
import type { HandlerData, HandlerJob, HandlerResult } from "../exchange/mod.ts";
import {
  BUILT_IN_NOT_FOUND,
  NOT_FOUND,
  type Pages,
  ROOT_INDEX,
  type Route,
  route as builtInRoute,
  type RouteResponse,
  WORKER_MARKER,
} from "./routes.ts";
import { serveStatic, type StaticOptions } from "./static.ts";

/** Everything a worker prepares once, at start-up. */
export interface WorkerState {
  /** What the main thread passed to every worker. */
  data: HandlerData;
  /** The built-in routes' pages. */
  pages: Pages;
  /** The static server's settings. */
  statics: StaticOptions;
  /** The `--app` module's app, when one was given. */
  app?: App;
  /** The routes tried before the static root; the book's by default. */
  route: Route;
}

/**
 * Reads `hello.html` and `404.html` from the static root, each when it is
 * there (the server checked before starting workers that those present can
 * be read). With `workerId`, `hello.html`'s {@linkcode WORKER_MARKER} becomes
 * that id, so `/` says which worker answered.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPages } from "./job.ts";
 * const pages = await loadPages(new URL("../static/", import.meta.url).pathname, 3);
 * assert.ok(new TextDecoder().decode(pages.hello).includes("answered by its worker 3."));
 * assert.ok(pages.notFound.length > 0);
 * ```
 */
export async function loadPages(root: string, workerId?: number): Promise<Pages> {
  const [hello, notFound] = await Promise.all([
    readIfThere(join(root, "hello.html")),
    readIfThere(join(root, "404.html")),
  ]);
  return {
    hello: workerId === undefined ? hello : withWorker(hello, workerId),
    notFound: notFound ?? BUILT_IN_NOT_FOUND,
  };
}

// The page with each WORKER_MARKER replaced by the worker's id; the page as it is without one.
function withWorker(page: Uint8Array | undefined, workerId: number): Uint8Array | undefined {
  if (page === undefined) return undefined;
  // Latin-1 keeps every byte as it is, whatever the page's encoding.
  const text = new TextDecoder("latin1").decode(page);
  if (!text.includes(WORKER_MARKER)) return page;
  const replaced = text.replaceAll(WORKER_MARKER, String(workerId));
  return Uint8Array.from(replaced, (c) => c.charCodeAt(0));
}

async function readIfThere(path: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** An `--app` module that cannot be loaded or has no `fetch`: a bad command line, exit status 2. */
export class AppError extends Error {
  /** The process's exit status for this failure. */
  readonly exitCode = 2;

  /**
   * The app `app` (as the user named it) is unusable; `reason` says why, in one line.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { AppError } from "./job.ts";
   * const error = new AppError("app.ts", "no such file");
   * assert.equal(error.message, "Invalid --app: app.ts: no such file");
   * assert.equal(error.exitCode, 2);
   * ```
   */
  constructor(app: string, reason: string) {
    super(`Invalid --app: ${app}: ${reason}`);
    this.name = "AppError";
  }
}

// The first line of what an import failure says: the message is for one line of the CLI.
// The server's own modules: a frame there says nothing about the app.
const OWN_CODE = ["handlers/", "pool/", "server/", "http/", "exchange/"].map((dir) =>
  new URL(`../${dir}`, import.meta.url).href
);

/**
 * Why an app module did not load, in one line: the error's first line and where it happened, as a
 * file path with line and column (a syntax error's place, or the first stack frame of an error
 * thrown while the module ran), as `deno serve` shows them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeLoadError } from "./job.ts";
 * const error = new Error("db unreachable");
 * error.stack = "Error: db unreachable\n    at connect (file:///srv/app/db.ts:2:9)\n    at file:///srv/app/app.ts:4:1";
 * assert.equal(describeLoadError(error), "db unreachable (at connect, /srv/app/db.ts:2:9)");
 * ```
 */
export function describeLoadError(error: unknown): string {
  // deno-lint-ignore no-control-regex -- terminal colours are what this removes
  const plain = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, "");
  const message = plain(error instanceof Error ? error.message : String(error));
  const first = message.split("\n")[0];
  // A syntax error names its place in its message; a thrown error, in its stack.
  const lines = [...message.split("\n"), ...plain(error instanceof Error ? error.stack ?? "" : "").split("\n")];
  for (const line of lines) {
    const frame = /^\s*at (?!async )(?:(.+?) \()?(file:\/\/[^\s()]+?):(\d+):(\d+)\)?$/.exec(line);
    if (!frame || OWN_CODE.some((own) => frame[2].startsWith(own))) continue;
    const place = `${fileURLToPath(frame[2])}:${frame[3]}:${frame[4]}`;
    return `${first} (at ${frame[1] ? `${frame[1]}, ` : ""}${place})`;
  }
  return first;
}

/**
 * Prepares a worker: the pages (`/` naming `workerId` when given), the static root's real path, and the app.
 *
 * @throws {AppError} when the app module cannot be loaded or has no `fetch`.
 */
export async function setupWorker(
  data: HandlerData,
  route: Route = builtInRoute,
  workerId?: number,
): Promise<WorkerState> {
  const statics: StaticOptions = {
    root: await Deno.realPath(data.root),
    dotfiles: data.dotfiles,
    dirListing: data.dirListing,
    cacheControl: data.cacheControl,
  };
  const state: WorkerState = { data, pages: await loadPages(data.root, workerId), statics, route };
  if (data.app !== undefined) {
    // Before the app's code runs, so that every Response it makes says whether its body is whole.
    trackResponseBodies();
    let module: { default?: unknown };
    try {
      module = await import(data.app);
    } catch (error) {
      throw new AppError(data.appName ?? data.app, describeLoadError(error));
    }
    if (module.default === undefined) {
      throw new AppError(
        data.appName ?? data.app,
        "the module has no default export (it needs export default { fetch(request, info) { ... } })",
      );
    }
    if (!isApp(module.default)) {
      throw new AppError(data.appName ?? data.app, "the default export has no fetch(request, info) method");
    }
    state.app = module.default;
  }
  return state;
}

/**
 * Answers one framed request. A request the parser rejects gets its error
 * status and closes the connection; a streamed app response goes out
 * through `progress`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_LIMITS } from "../http/mod.ts";
 * import { handleJob, setupWorker } from "./job.ts";
 * const root = new URL("../static/", import.meta.url).pathname;
 * const state = await setupWorker({ root, limits: DEFAULT_LIMITS, dotfiles: false, dirListing: false, cacheControl: "no-cache" });
 * const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
 * const job = { bytes, close: false, remote: { hostname: "127.0.0.1", port: 1 } };
 * const progress = { emit: () => Promise.resolve(), flush: () => Promise.resolve(), signal: new AbortController().signal };
 * const result = await handleJob(job, 0, state, progress);
 * assert.equal(result.status, 200);
 * ```
 */
export async function handleJob(
  job: HandlerJob,
  workerId: number,
  state: WorkerState,
  progress: JobProgress,
): Promise<HandlerResult> {
  let request;
  try {
    request = parseRequest(job.bytes, state.data.limits);
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    return { bytes: errorResponse(error.status), status: error.status, workerId, close: true };
  }
  const exchange = { method: request.method, version: request.version, close: job.close, workerId };
  if (state.app) {
    let fetchRequest;
    try {
      fetchRequest = toRequest(request, progress, job.secure);
    } catch {
      return { bytes: errorResponse(400), status: 400, workerId, close: true };
    }
    const info = new Info(job.remote, workerId);
    try {
      const response = await state.app.fetch(fetchRequest, info);
      if (!(response instanceof Response)) throw new TypeError("The app's fetch did not return a Response");
      // Only Deno.upgradeWebSocket makes a 101 Response; this server does not serve WebSockets yet.
      if (response.status === 101) return upgradeRefused(workerId);
      return await writeResponse(response, exchange, progress, info.completion);
    } finally {
      // The exchange is over, however it ended.
      info.completion.resolve();
    }
  }

  const routed = state.route(request, state.pages);
  let answer: RouteResponse | undefined;
  // A root without hello.html answers `/` (and `/sleep`, after its sleep) with its index.
  if (routed === ROOT_INDEX) answer = await serveStatic({ ...request, target: "/" }, state.statics);
  else answer = routed ?? await serveStatic(request, state.statics);
  answer ??= NOT_FOUND(request, state.pages);
  const head = request.method === "HEAD";
  const file = answer.file;
  const bytes = serializeResponse({
    ...answer,
    length: file?.length,
    omitBody: head,
    close: job.close,
    keepAlive: request.version === "HTTP/1.0",
  });
  return { bytes, status: answer.status, workerId, close: job.close, file: head ? undefined : file };
}

const UPGRADE_REFUSED = new TextEncoder().encode("WebSocket upgrades are not supported by this server\n");

// The answer to an app that called Deno.upgradeWebSocket: 501, and the main thread logs why.
function upgradeRefused(workerId: number): HandlerResult {
  const bytes = serializeResponse({
    status: 501,
    headers: [["Content-Type", "text/plain; charset=utf-8"]],
    body: UPGRADE_REFUSED,
    close: true,
  });
  return { bytes, status: 501, workerId, close: true, upgradeRefused: true };
}

// The `info` an app's fetch gets. `completed` is made when the app first asks for it: most never do.
class Info implements ServeInfo {
  readonly remoteAddr: ServeInfo["remoteAddr"];
  readonly workerId: number;
  readonly completion = new Completion();

  constructor(remote: HandlerJob["remote"], workerId: number) {
    this.remoteAddr = { transport: "tcp", hostname: remote.hostname, port: remote.port };
    this.workerId = workerId;
  }

  get completed(): Promise<void> {
    return this.completion.promise;
  }
}
