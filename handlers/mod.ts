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

/** One request on its way to a worker. */
export interface HandlerJob {
  /** Exactly the bytes of one framed request. */
  bytes: Uint8Array;
  /** Whether the response must close the connection (`Connection: close`). */
  close: boolean;
}

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
}

/** Start-up data for each worker. */
export interface HandlerData {
  /** The static root folder, an absolute path. */
  root: string;
  /** The limits the main thread framed requests with. */
  limits: RequestLimits;
}
