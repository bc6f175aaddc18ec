/**
 * The worker side of {@linkcode ThreadPool}: a worker module calls
 * {@linkcode runJobs} once with the function that does its jobs.
 *
 * @module
 */
import { type FromWorker, serializeError, type ToWorker } from "./_messages.ts";

/** What a worker knows about itself. *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { WorkerContext } from "./worker.ts";
 * const context: WorkerContext<{ root: string }> = { id: 0, data: { root: "/srv" } };
 * assert.equal(context.data.root, "/srv");
 * ```
 */
export interface WorkerContext<Data = unknown> {
  /** The worker's id in its pool, from 0 to size - 1. */
  id: number;
  /** The `data` option the pool was created with. */
  data: Data;
}

/** Progress messages a job may have in flight before `emit` waits for the main thread. */
export const PROGRESS_WINDOW = 8;

/**
 * Lets a running job send parts of its output before its result, such as the
 * chunks of a streamed response.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { JobProgress } from "./worker.ts";
 * const sent: unknown[] = [];
 * const progress: JobProgress = {
 *   emit(data) {
 *     sent.push(data);
 *     return Promise.resolve();
 *   },
 * };
 * await progress.emit("part");
 * assert.deepEqual(sent, ["part"]);
 * ```
 */
export interface JobProgress {
  /**
   * Sends `data` to the pool's `onProgress` for this job. Resolves at once
   * while fewer than {@linkcode PROGRESS_WINDOW} messages wait to be
   * consumed, so a fast producer cannot run ahead of a slow consumer.
   * Rejects with an `AbortError` once the pool has cancelled the job (its
   * `signal` aborted): the job should stop producing.
   */
  emit(data: unknown, transfer?: Transferable[]): Promise<void>;
  /** Aborts when the pool cancels the job, so a job waiting on something else can stop at once. */
  readonly signal?: AbortSignal;
}

/**
 * The function a worker module runs for each job.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { JobHandler } from "./worker.ts";
 * const double: JobHandler<number, number> = (n) => n * 2;
 * assert.equal(double(2, { id: 0, data: undefined }, { emit: () => Promise.resolve() }), 4);
 * ```
 */
export type JobHandler<Job, Result, Data = unknown> = (
  job: Job,
  context: WorkerContext<Data>,
  progress: JobProgress,
) => Result | Promise<Result>;

/**
 * Options for {@linkcode runJobs}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RunJobsOptions } from "./worker.ts";
 * const options: RunJobsOptions<Uint8Array> = { transfer: (bytes) => [bytes.buffer as ArrayBuffer] };
 * assert.equal(options.transfer!(new Uint8Array(4)).length, 1);
 * ```
 */
export interface RunJobsOptions<Result, Data = unknown> {
  /**
   * Runs once with the worker's context before the worker reports ready; a
   * throw here fails the worker's start-up.
   */
  setup?: (context: WorkerContext<Data>) => void | Promise<void>;
  /** Objects in a result whose ownership moves to the main thread instead of being copied. */
  transfer?: (result: Result) => Transferable[];
}

interface WorkerScope {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  close(): void;
}

/**
 * Serves jobs from the pool inside a worker. One job runs at a time: the next
 * one starts only when the previous result has been sent.
 *
 * @param handler Turns a job into its result; a throw becomes the job's rejection.
 * @param options A setup step and what to transfer; see {@linkcode RunJobsOptions}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ThreadPool } from "./thread_pool.ts";
 * // tests/fixtures/double_worker.ts is a worker module of two lines:
 * //   import { runJobs } from "../../pool/worker.ts";
 * //   runJobs((n: number) => n * 2);
 * const url = new URL("../tests/fixtures/double_worker.ts", import.meta.url);
 * await using pool = new ThreadPool<number, number>(1, url);
 * assert.equal(await pool.execute(4), 8);
 * ```
 */
export function runJobs<Job, Result, Data = unknown>(
  handler: JobHandler<Job, Result, Data>,
  options: RunJobsOptions<Result, Data> = {},
): void {
  const { setup, transfer } = options;
  const scope = globalThis as unknown as WorkerScope;
  let context: WorkerContext<Data> | undefined;
  let current: Progress | undefined;
  // Jobs run strictly one after another, as on a thread.
  let chain: Promise<void> = Promise.resolve();
  scope.onmessage = (event) => {
    const message = event.data;
    if (message.type === "init") {
      context = { id: message.id, data: message.data as Data };
      const ctx = context;
      chain = chain.then(async () => {
        try {
          await setup?.(ctx);
        } catch (error) {
          // Reported as a message, not thrown: the pool gives the reason, and the
          // runtime prints no uncaught-error trace for what is a start-up failure.
          scope.postMessage({ type: "setup-failed", error: serializeError(error) });
          return;
        }
        scope.postMessage({ type: "ready" });
      });
    } else if (message.type === "ack") {
      if (message.seq === current?.seq) current.ack();
    } else if (message.type === "cancel") {
      if (message.seq === current?.seq) current.cancel();
    } else if (message.type === "job") {
      const { seq, job } = message;
      chain = chain.then(async () => {
        const progress = new Progress(seq, scope);
        current = progress;
        try {
          const result = await handler(job as Job, context!, progress);
          scope.postMessage({ type: "result", seq, ok: true, result }, transfer?.(result));
        } catch (error) {
          scope.postMessage({ type: "result", seq, ok: false, error: serializeError(error) });
        }
      });
    } else if (message.type === "stop") {
      chain = chain.then(() => {
        scope.postMessage({ type: "stopped" });
        scope.close();
      });
    }
  };
}

// One job's progress channel, with a window of unacknowledged messages.
class Progress implements JobProgress {
  readonly seq: number;
  readonly #scope: WorkerScope;
  #unacked = 0;
  #cancelled = false;
  readonly #abort = new AbortController();
  readonly signal: AbortSignal = this.#abort.signal;
  #waiters: Array<() => void> = [];

  constructor(seq: number, scope: WorkerScope) {
    this.seq = seq;
    this.#scope = scope;
  }

  async emit(data: unknown, transfer: Transferable[] = []): Promise<void> {
    while (this.#unacked >= PROGRESS_WINDOW && !this.#cancelled) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    if (this.#cancelled) throw new DOMException("The job's output is no longer wanted", "AbortError");
    this.#unacked++;
    this.#scope.postMessage({ type: "progress", seq: this.seq, data }, transfer);
  }

  ack(): void {
    this.#unacked--;
    this.#waiters.shift()?.();
  }

  cancel(): void {
    this.#cancelled = true;
    this.#abort.abort(new DOMException("The job's output is no longer wanted", "AbortError"));
    for (const wake of this.#waiters.splice(0)) wake();
  }
}
