/**
 * Fetch-style apps, the shape `deno serve` takes: a module whose default
 * export has `fetch(request, info)` returning a `Response`. This file turns a
 * parsed request into a `Request` and the app's `Response` into bytes,
 * streamed when its length is not known up front.
 *
 * @module
 */
import { type ParsedRequest, serializeResponse } from "../http/mod.ts";
import type { JobProgress } from "../pool/run_jobs.ts";
import type { HandlerResult, StreamPart } from "../exchange/mod.ts";

/** What a handler learns besides the request, as `deno serve` gives it. */
export interface ServeInfo {
  /** The client's address. */
  remoteAddr: { transport: "tcp"; hostname: string; port: number };
  /** The id of the worker running the handler. */
  workerId: number;
  /**
   * Resolves once the response has been written to the client, or once the
   * exchange has ended without that (the client went away, the handler
   * timed out, the handler failed). Never rejects.
   */
  readonly completed: Promise<void>;
}

/** An app: what `--app` modules export by default. */
export interface App {
  /** Answers one request, as `deno serve` calls it. */
  fetch(request: Request, info: ServeInfo): Response | Promise<Response>;
}

/**
 * Checks that a module's default export is an {@linkcode App}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isApp } from "./fetch.ts";
 * assert.ok(isApp({ fetch: () => new Response("hi") }));
 * assert.ok(!isApp({ handler: () => {} }));
 * ```
 */
export function isApp(value: unknown): value is App {
  return typeof value === "object" && value !== null && typeof (value as App).fetch === "function";
}

// Headers the server owns: framing and connection management are decided here.
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te"]);

const encoder = new TextEncoder();
const CHUNKED_END = encoder.encode("0\r\n\r\n");
const NOTHING = new Uint8Array(0);

// A Request whose `signal` is the job's: it aborts when the client goes away or the
// handler times out. (Passing a signal to the Request constructor would make it
// follow that signal at three times the cost of the Request itself.)
class ServerRequest extends Request {
  readonly #source: { readonly signal: AbortSignal };

  constructor(input: string | Request, init: RequestInit | undefined, source: { readonly signal: AbortSignal }) {
    super(input, init);
    this.#source = source;
  }

  override get signal(): AbortSignal {
    return this.#source.signal;
  }

  override clone(): Request {
    return new ServerRequest(super.clone(), undefined, this.#source);
  }
}

/**
 * Builds the `Request` an app sees: the full URL from the Host header (or an
 * absolute-form target), the method, every header, the body, and, when
 * given, the signal of `source` (read when the app first asks for it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRequest } from "../http/mod.ts";
 * import { toRequest } from "./fetch.ts";
 * const parsed = parseRequest(new TextEncoder().encode("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"));
 * const controller = new AbortController();
 * const request = toRequest(parsed, controller);
 * assert.equal(request.url, "http://example.com/a?b=1");
 * controller.abort();
 * assert.ok(request.signal.aborted);
 * ```
 */
export function toRequest(parsed: ParsedRequest, source?: { readonly signal: AbortSignal }): Request {
  const host = parsed.headers.find(([name]) => name === "host")?.[1] || "localhost";
  const url = parsed.target.startsWith("/")
    ? `http://${host}${parsed.target}`
    : parsed.target === "*"
    ? `http://${host}/`
    : parsed.target;
  const hasBody = parsed.method !== "GET" && parsed.method !== "HEAD" && parsed.bodyBytes.length > 0;
  // A GET without an init object, and headers appended one by one, cost about half as much.
  const init = parsed.method === "GET" ? undefined : {
    method: parsed.method,
    body: hasBody ? parsed.bodyBytes.slice() : undefined,
  };
  const request = source ? new ServerRequest(url, init, source) : new Request(url, init);
  for (const [name, value] of parsed.headers) request.headers.append(name, value);
  return request;
}

/**
 * The `completed` promise of one exchange. It is made only when the app
 * asks for it; then the response is sent in a way the main thread
 * acknowledges once it is written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Completion } from "./fetch.ts";
 * const completion = new Completion();
 * assert.equal(completion.wanted, false);
 * const done = completion.promise;
 * assert.equal(completion.wanted, true);
 * completion.resolve();
 * await done;
 * ```
 */
export class Completion {
  #promise: PromiseWithResolvers<void> | undefined;
  #done = false;

  /** Whether the app has asked for the promise. */
  get wanted(): boolean {
    return this.#promise !== undefined;
  }

  /** The promise the app sees as `info.completed`; resolved at once if the exchange is over. */
  get promise(): Promise<void> {
    if (!this.#promise) {
      this.#promise = Promise.withResolvers<void>();
      if (this.#done) this.#promise.resolve();
    }
    return this.#promise.promise;
  }

  /** The exchange is over. */
  resolve(): void {
    this.#done = true;
    this.#promise?.resolve();
  }
}

function responseHeaders(response: Response): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  // Iterating Headers keeps each Set-Cookie separate.
  for (const [name, value] of response.headers) {
    if (!HOP_BY_HOP.has(name)) out.push([name, value]);
  }
  return out;
}

// Microtask turns a body's next piece may take and still count as there already: a
// bytes or string body takes one, a Blob four. A piece that takes longer is given
// one turn of the event loop more (a chain of transform streams, a small file);
// one that needs a timer or the network is a stream.
const SETTLE_TICKS = 16;

// The outcome of `next` if it settles within SETTLE_TICKS microtask turns, else
// one event-loop turn later, else "later". It stops counting turns as soon as
// `next` settles: a bytes body costs two turns, not SETTLE_TICKS.
async function nextPiece<T>(next: Promise<T>): Promise<T | "later"> {
  let settled = false;
  next.then(() => settled = true, () => settled = true);
  for (let i = 0; i < SETTLE_TICKS && !settled; i++) await null;
  if (settled) return await next;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const turn = new Promise<"later">((resolve) => timer = setTimeout(() => resolve("later"), 0));
  try {
    return await Promise.race([next, turn]);
  } finally {
    clearTimeout(timer);
  }
}

function notBytes(): TypeError {
  return new TypeError("The app's response body gave a chunk that is not bytes");
}

function own(bytes: Uint8Array): Uint8Array {
  // Always a copy: the piece is transferred to the main thread, and the app may reuse its buffer.
  return bytes.slice();
}

function chunkFrame(bytes: Uint8Array): Uint8Array {
  const size = encoder.encode(`${bytes.length.toString(16)}\r\n`);
  const out = new Uint8Array(size.length + bytes.length + 2);
  out.set(size);
  out.set(bytes, size.length);
  out.set([0x0d, 0x0a], size.length + bytes.length);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** What {@linkcode writeResponse} needs to know about the exchange. */
export interface ExchangeInfo {
  /** The request's method (HEAD gets no body). */
  method: string;
  /** The request's version (HTTP/1.0 gets no chunked coding). */
  version: "HTTP/1.0" | "HTTP/1.1";
  /** Whether the connection closes after this response. */
  close: boolean;
  /** The worker's id, for the log. */
  workerId: number;
}

/**
 * Turns an app's `Response` into the result the main thread writes. A body
 * that is complete as soon as it is read goes out with `Content-Length`; a
 * body that keeps coming is streamed through `progress`, with chunked coding
 * for HTTP/1.1 and a closing connection for HTTP/1.0. When the app waits
 * for its `completion`, everything goes through `progress`, and the result
 * is returned once the main thread has written it all.
 */
export async function writeResponse(
  response: Response,
  exchange: ExchangeInfo,
  progress: JobProgress,
  completion?: Completion,
): Promise<HandlerResult> {
  const { status, statusText } = response;
  const headers = responseHeaders(response);
  const { workerId } = exchange;
  const head = exchange.method === "HEAD";
  const bodyless = status === 204 || status === 304 || status < 200;
  const keepAlive = exchange.version === "HTTP/1.0";
  const reader = response.body?.getReader();
  if (reader === undefined || bodyless) {
    await reader?.cancel();
    // An app that answers HEAD itself may state the length a GET would have.
    const declared = head ? response.headers.get("content-length") : null;
    const length = declared !== null && /^\d+$/.test(declared) ? Number(declared) : undefined;
    const bytes = serializeResponse({ status, reason: statusText, headers, length, close: exchange.close, keepAlive });
    return delivered({ bytes, status, workerId, close: exchange.close });
  }

  // A bytes or string body arrives as one piece followed at once by the end: send it
  // with Content-Length. Anything else (a second piece, or a wait) is a stream.
  const parts: Uint8Array[] = [];
  for (;;) {
    const next = reader.read();
    if (parts.length === 2) return head ? await headOfStream() : await stream(next);
    const ready = await nextPiece(next);
    if (ready === "later") return head ? await headOfStream() : await stream(next);
    if (ready.done) break;
    if (!(ready.value instanceof Uint8Array)) {
      await reader.cancel().catch(() => {});
      throw notBytes();
    }
    parts.push(ready.value);
  }
  const body = parts.length === 1 ? parts[0] : concat(parts);
  const bytes = serializeResponse({
    status,
    reason: statusText,
    headers,
    body,
    omitBody: head,
    close: exchange.close,
    keepAlive,
  });
  return delivered({ bytes, status, workerId, close: exchange.close });

  // A complete response, sent as the result; or, when the app waits for its completion, as one
  // stream part the main thread acknowledges once written.
  function delivered(result: HandlerResult): HandlerResult | Promise<HandlerResult> {
    if (!completion?.wanted) return result;
    return (async () => {
      await progress.emit({ kind: "head", result } satisfies StreamPart, [result.bytes.buffer as ArrayBuffer]);
      await progress.flush();
      return { ...result, bytes: NOTHING.slice() };
    })();
  }

  // HEAD of a body whose length is unknown: neither Content-Length nor chunked.
  async function headOfStream(): Promise<HandlerResult> {
    await reader!.cancel();
    const bytes = serializeResponse({
      status,
      reason: statusText,
      headers,
      length: "close",
      close: exchange.close,
      keepAlive,
    });
    return delivered({ bytes, status, workerId, close: exchange.close });
  }

  async function stream(pending: Promise<ReadableStreamReadResult<Uint8Array>>): Promise<HandlerResult> {
    const chunked = exchange.version === "HTTP/1.1";
    const close = exchange.close || !chunked;
    const start = serializeResponse({
      status,
      reason: statusText,
      headers,
      length: chunked ? "chunked" : "close",
      close,
    });
    await progress.emit({ kind: "head", result: { bytes: start, status, workerId, close } } satisfies StreamPart, [
      start.buffer as ArrayBuffer,
    ]);
    const send = async (bytes: Uint8Array) => {
      if (bytes.length === 0) return;
      const framed = chunked ? chunkFrame(bytes) : own(bytes);
      await progress.emit({ kind: "chunk", bytes: framed } satisfies StreamPart, [framed.buffer as ArrayBuffer]);
    };
    // A cancelled job stops even while the app's stream is quiet.
    const { signal } = progress;
    const onAbort = () => reader!.cancel(signal.reason).catch(() => {});
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (const part of parts) await send(part);
      for (let result = await pending; !result.done; result = await reader!.read()) {
        if (!(result.value instanceof Uint8Array)) throw notBytes();
        await send(result.value);
      }
      signal.throwIfAborted();
    } catch (error) {
      // The client is gone (the pool cancelled the job) or the stream failed: stop the app's stream too.
      await reader!.cancel(error).catch(() => {});
      throw error;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    const last = chunked ? CHUNKED_END.slice() : NOTHING.slice();
    if (!completion?.wanted) return { bytes: last, status, workerId, close };
    // The app waits for its completion: the end goes out as a part too, and is acknowledged once written.
    if (last.length > 0) await progress.emit({ kind: "chunk", bytes: last } satisfies StreamPart, [last.buffer]);
    await progress.flush();
    return { bytes: NOTHING.slice(), status, workerId, close };
  }
}
