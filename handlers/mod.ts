/**
 * The request handlers that run inside the pool's workers, and the job and
 * result types that carry requests to them and responses back.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { targetPath } from "./mod.ts";
 * assert.ok(targetPath("/?q") === "/");
 * ```
 *
 * @module
 */
import type { RequestLimits } from "../http/mod.ts";

export * from "./routes.ts";
export * from "./job.ts";
export * from "./fetch.ts";
export * from "./static.ts";
export * from "./codec.ts";

/** One request on its way to a worker. */
export interface HandlerJob {
  /** Exactly the bytes of one framed request. */
  bytes: Uint8Array;
  /** Whether the response must close the connection (`Connection: close`). */
  close: boolean;
  /** The client's address. */
  remote: { hostname: string; port: number };
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
