// Messages between the pool (main thread) and its workers, in one place. Jobs
// are named by their position in the shared queue (`seq`).
import type { QueueBuffers } from "./_channel.ts";

/**
 * Pool to worker: the worker's identity, its start-up data, and the shared
 * memory it works through. Sent once, first. `number` is unique to this
 * worker among all the pool has started (a replacement gets a new one).
 */
export interface InitMessage {
  type: "init";
  id: number;
  number: number;
  data: unknown;
  queue: QueueBuffers;
  block: SharedArrayBuffer;
  /** The worker's heap limit in MiB (`resourceLimits.maxOldGenerationSizeMb`), when it has one. */
  heapLimitMb?: number;
}

/** Pool to worker: the payload of the job at `seq`, which the worker asked for; absent when it was cancelled. */
export type JobMessage = { type: "job"; seq: number; job: unknown } | { type: "job"; seq: number; gone: true };

/** Pool to worker: the main thread has consumed one progress message of job `seq`. */
export interface AckMessage {
  type: "ack";
  seq: number;
}

/**
 * Pool to worker: stop job `seq`. `cancel`: its caller no longer wants it
 * (its signal aborts with an `AbortError`, its next `emit` rejects), and
 * its outcome is still sent. `timeout` and `drop`: the pool has failed it
 * already (it ran past its timeout, or its caller's `onProgress` threw), so
 * its signal aborts (with a `TimeoutError` for a timeout), its outcome is
 * dropped, and its room is free at once.
 */
export interface AbortMessage {
  type: "abort";
  seq: number;
  kind: "cancel" | "timeout" | "drop";
}

/** Pool to worker: finish up and exit. */
export interface StopMessage {
  type: "stop";
}

/**
 * Worker to pool: its module has run as far as `runJobs`, so it now listens
 * for `init`. (A message sent earlier, while a top-level `await` holds the
 * module, would be lost.)
 */
export interface LoadedMessage {
  type: "loaded";
}

/** Worker to pool: set up and waiting for jobs. */
export interface ReadyMessage {
  type: "ready";
}

/** Worker to pool: send the payload of the job `seq`, which it claimed from the queue. */
export interface WantMessage {
  type: "want";
  seq: number;
}

/** Worker to pool: the outcome of the job `seq`, when it does not go through the reply ring. */
export type ResultMessage =
  | { type: "result"; seq: number; ok: true; result: unknown }
  | { type: "result"; seq: number; ok: false; error: SerializedError };

/** Worker to pool: a part of job `seq`'s output, sent before its result. */
export interface ProgressMessage {
  type: "progress";
  seq: number;
  data: unknown;
}

/** Worker to pool: its setup failed; it will take no jobs. */
export interface SetupFailedMessage {
  type: "setup-failed";
  error: SerializedError;
}

/** Worker to pool: about to exit. */
export interface StoppedMessage {
  type: "stopped";
}

/** Worker to pool: an error escaped every job (thrown from a timer, an unhandled rejection); it ends now. */
export interface CrashedMessage {
  type: "crashed";
  error: SerializedError;
}

/** An error carried across the thread boundary. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  /** The error's `exitCode`, when it carries one (a start-up failure that decides the process's status). */
  exitCode?: number;
}

export type ToWorker = InitMessage | JobMessage | AckMessage | AbortMessage | StopMessage;
export type FromWorker =
  | LoadedMessage
  | ReadyMessage
  | WantMessage
  | SetupFailedMessage
  | ResultMessage
  | ProgressMessage
  | StoppedMessage
  | CrashedMessage;

export function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    const { exitCode } = error as { exitCode?: unknown };
    const serialized: SerializedError = { name: error.name, message: error.message, stack: error.stack };
    if (typeof exitCode === "number") serialized.exitCode = exitCode;
    return serialized;
  }
  return { name: "Error", message: String(error) };
}

/** An error from a worker, rebuilt in the main thread with its name, message and stack. */
export function deserializeError(error: SerializedError): Error {
  const out = new Error(error.message);
  out.name = error.name;
  if (error.stack) out.stack = error.stack;
  return out;
}
