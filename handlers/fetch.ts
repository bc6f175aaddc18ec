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
 * Builds the `Request` an app sees: the full URL from the connection's
 * scheme (`https` when `secure`) and the Host header (or an absolute-form
 * target), the method, every header, the body, and, when given, the signal
 * of `source` (read when the app first asks for it).
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
export function toRequest(
  parsed: ParsedRequest,
  source?: { readonly signal: AbortSignal },
  secure = false,
): Request {
  const host = parsed.headers.find(([name]) => name === "host")?.[1] || "localhost";
  const scheme = secure ? "https" : "http";
  // An absolute-form target names its own scheme and host (RFC 9112, section 3.2.2).
  const url = parsed.target.startsWith("/")
    ? `${scheme}://${host}${parsed.target}`
    : parsed.target === "*"
    ? `${scheme}://${host}/`
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

// Responses whose body was given whole (a string, bytes, a Blob, form data, JSON): read at once,
// so they go out with Content-Length. A Response does not tell where its body came from, so the
// Response apps construct in this worker records it (see trackResponseBodies); any other body is
// a stream.
const WHOLE_BODIES = new WeakSet<Response>();
let tracking = false;

function isWholeBody(body: unknown): boolean {
  return typeof body === "string" || body instanceof ArrayBuffer || ArrayBuffer.isView(body) ||
    body instanceof Blob || body instanceof FormData || body instanceof URLSearchParams ||
    body instanceof SharedArrayBuffer;
}

/**
 * Makes `globalThis.Response` of this worker a subclass that records which
 * responses were given their body whole, so that {@linkcode writeResponse}
 * sends those with `Content-Length` and streams the rest. Call it once,
 * before the app is loaded. `instanceof Response` holds for every response,
 * the runtime's own (from `fetch`, `Response.error()`) included.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hasWholeBody, trackResponseBodies } from "./fetch.ts";
 * trackResponseBodies();
 * assert.ok(hasWholeBody(new Response("hello")));
 * assert.ok(hasWholeBody(Response.json({ ok: true })));
 * assert.ok(!hasWholeBody(new Response(new Blob(["x"]).stream())));
 * assert.ok(Response.error() instanceof Response);
 * ```
 */
export function trackResponseBodies(): void {
  if (tracking) return;
  tracking = true;
  const Native = globalThis.Response;
  class Response extends Native {
    constructor(body?: BodyInit | null, init?: ResponseInit) {
      super(body, init);
      if (body !== null && body !== undefined && isWholeBody(body)) WHOLE_BODIES.add(this);
    }

    static override [Symbol.hasInstance](value: unknown): boolean {
      return value instanceof Native;
    }

    static override json(data: unknown, init?: ResponseInit): Response {
      const response = Native.json(data, init);
      WHOLE_BODIES.add(response);
      return response;
    }

    override clone(): Response {
      const copy = super.clone();
      if (WHOLE_BODIES.has(this)) WHOLE_BODIES.add(copy);
      return copy;
    }
  }
  globalThis.Response = Response;
}

/**
 * Whether `response` was given its body whole (as recorded once
 * {@linkcode trackResponseBodies} has run), so its length is known once read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hasWholeBody } from "./fetch.ts";
 * assert.ok(!hasWholeBody(new Response(new ReadableStream())));
 * ```
 */
export function hasWholeBody(response: Response): boolean {
  return WHOLE_BODIES.has(response);
}

// The length a response declares in Content-Length, when it is a plain decimal number.
function declaredLength(response: Response): number | undefined {
  const declared = response.headers.get("content-length");
  return declared !== null && /^\d{1,15}$/.test(declared) ? Number(declared) : undefined;
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

/** The app's streamed body broke its own declared `Content-Length`; the connection is closed to say so. */
export class BodyLengthError extends Error {
  /** The length the response declared. */
  readonly declared: number;
  /** The bytes the body gave (up to where it was stopped). */
  readonly given: number;

  /** `given` bytes of a body that declared `declared`. */
  constructor(declared: number, given: number) {
    super(
      `The app's response body gave ${given > declared ? "more than" : "only"} ${given} bytes; it declared ${declared}`,
    );
    this.name = "BodyLengthError";
    this.declared = declared;
    this.given = given;
  }
}

/**
 * Turns an app's `Response` into the result the main thread writes. A body
 * given whole (see {@linkcode trackResponseBodies}) goes out with
 * `Content-Length`; a stream goes out as it comes, with the length it
 * declares if any, else chunked for HTTP/1.1 and with a closing connection
 * for HTTP/1.0. When the app waits for its `completion`, everything goes
 * through `progress`, and the result is returned once the main thread has
 * written it all.
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
  const declared = declaredLength(response);
  const reader = response.body?.getReader();
  if (reader === undefined || bodyless || (head && !hasWholeBody(response))) {
    await reader?.cancel();
    // A HEAD answer states the length a GET would have when the app declares it; a stream that
    // declares none gets neither Content-Length nor chunked coding.
    const streamed = reader !== undefined && !bodyless;
    const length = !head ? undefined : streamed ? declared ?? "close" : declared;
    const bytes = serializeResponse({ status, reason: statusText, headers, length, close: exchange.close, keepAlive });
    return delivered({ bytes, status, workerId, close: exchange.close });
  }
  if (!hasWholeBody(response)) return await stream();

  // A body given whole is read at once, however many pieces it comes in (a Blob gives several).
  const parts: Uint8Array[] = [];
  for (let result = await reader.read(); !result.done; result = await reader.read()) {
    if (!(result.value instanceof Uint8Array)) {
      await reader.cancel().catch(() => {});
      throw notBytes();
    }
    parts.push(result.value);
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

  async function stream(): Promise<HandlerResult> {
    // With a declared length the pieces go out as they are, and the count is held to it.
    const chunked = declared === undefined && exchange.version === "HTTP/1.1";
    const close = exchange.close || (declared === undefined && !chunked);
    const start = serializeResponse({
      status,
      reason: statusText,
      headers,
      length: declared ?? (chunked ? "chunked" : "close"),
      close,
      keepAlive: keepAlive && !close,
    });
    await progress.emit({ kind: "head", result: { bytes: start, status, workerId, close } } satisfies StreamPart, [
      start.buffer as ArrayBuffer,
    ]);
    let given = 0;
    const send = async (bytes: Uint8Array) => {
      if (bytes.length === 0) return;
      given += bytes.length;
      if (declared !== undefined && given > declared) throw new BodyLengthError(declared, given);
      const framed = chunked ? chunkFrame(bytes) : own(bytes);
      await progress.emit({ kind: "chunk", bytes: framed } satisfies StreamPart, [framed.buffer as ArrayBuffer]);
    };
    // A cancelled job stops even while the app's stream is quiet.
    const { signal } = progress;
    const onAbort = () => reader!.cancel(signal.reason).catch(() => {});
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (let result = await reader!.read(); !result.done; result = await reader!.read()) {
        if (!(result.value instanceof Uint8Array)) throw notBytes();
        await send(result.value);
      }
      signal.throwIfAborted();
      if (declared !== undefined && given < declared) throw new BodyLengthError(declared, given);
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
