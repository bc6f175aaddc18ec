/**
 * What passes between the server (main thread) and the handler workers: the
 * job that carries a request, the result that carries its response, file
 * bodies and stream parts, the workers' start-up data, and the error results
 * the main thread answers with itself. Neither side imports the other; both
 * import this.
 *
 * @module
 */
import { errorResponse, type RequestLimits } from "../http/mod.ts";

/** One request on its way to a worker. */
export interface HandlerJob {
  /** Exactly the bytes of one framed request. */
  bytes: Uint8Array;
  /** Whether the response must close the connection (`Connection: close`). */
  close: boolean;
  /** The client's address. */
  remote: { hostname: string; port: number };
  /** Whether the request came over TLS, so that its URL is `https:`. */
  secure?: boolean;
}

/** A part of a file that the main thread sends after a response's head. */
export interface FileBody {
  /** The file's real path. */
  path: string;
  /** Offset of the first byte to send. */
  start: number;
  /** How many bytes to send. */
  length: number;
}

/**
 * What a worker emits while streaming a response: first the head (a
 * {@linkcode HandlerResult} whose bytes are the status line and headers),
 * then body pieces already framed for the wire. The job's result then
 * carries the last bytes (the chunked terminator, or nothing).
 */
export type StreamPart = { kind: "head"; result: HandlerResult } | { kind: "chunk"; bytes: Uint8Array };

/** One response on its way back from a worker. */
export interface HandlerResult {
  /** The complete response bytes. */
  bytes: Uint8Array;
  /** The response status, for the log. */
  status: number;
  /** The id of the worker that answered, for the log; none when the main thread answered. */
  workerId: number | undefined;
  /** Whether the connection closes after this response. */
  close: boolean;
  /** When set, these bytes of a file follow `bytes` on the wire; the main thread sends them. */
  file?: FileBody;
  /** The app asked for a WebSocket upgrade, which is not served: the response is a 501. */
  upgradeRefused?: boolean;
}

/** Start-up data for each worker. */
export interface HandlerData {
  /** The static root folder, an absolute path. */
  root: string;
  /** The limits the main thread framed requests with. */
  limits: RequestLimits;
  /** A `file:` URL of the app module to load instead of the built-in app. */
  app?: string;
  /** The app as the user named it, for messages. */
  appName?: string;
  /** Serve dotfiles. */
  dotfiles: boolean;
  /** List folders without an index. */
  dirListing: boolean;
  /** `Cache-Control` for static files. */
  cacheControl: string;
}

/** What an overloaded or stopping server asks clients to wait before retrying. */
export const RETRY_AFTER: [string, string] = ["Retry-After", "1"];

/**
 * A response the main thread gives instead of a worker's: a short plain-text
 * error that closes the connection.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorResult, RETRY_AFTER } from "./types.ts";
 * const result = errorResult(503, [RETRY_AFTER]);
 * assert.ok(result.close && result.workerId === undefined);
 * assert.match(new TextDecoder().decode(result.bytes), /Retry-After: 1/);
 * ```
 */
export function errorResult(status: number, headers: Array<[string, string]> = []): HandlerResult {
  return { bytes: errorResponse(status, headers), status, workerId: undefined, close: true };
}
