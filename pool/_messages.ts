// Messages between the pool (main thread) and its workers, in one place.

/** Pool to worker: the worker's identity and start-up data. Sent once, first. */
export interface InitMessage {
  type: "init";
  id: number;
  data: unknown;
}

/** Pool to worker: run one job. */
export interface JobMessage {
  type: "job";
  seq: number;
  job: unknown;
}

/** Pool to worker: the main thread has consumed one progress message of job `seq`. */
export interface AckMessage {
  type: "ack";
  seq: number;
}

/** Pool to worker: nobody wants job `seq`'s output any more; its next `emit` rejects. */
export interface CancelMessage {
  type: "cancel";
  seq: number;
}

/** Pool to worker: finish up and exit. */
export interface StopMessage {
  type: "stop";
}

/** Worker to pool: loaded and waiting for jobs. */
export interface ReadyMessage {
  type: "ready";
}

/** Worker to pool: the outcome of the job `seq`. */
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

/** An error carried across the thread boundary. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
}

export type ToWorker = InitMessage | JobMessage | AckMessage | CancelMessage | StopMessage;
export type FromWorker = ReadyMessage | SetupFailedMessage | ResultMessage | ProgressMessage | StoppedMessage;

export function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack };
  return { name: "Error", message: String(error) };
}
