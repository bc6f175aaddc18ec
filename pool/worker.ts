/**
 * The worker side of {@linkcode ThreadPool}: a worker module calls
 * {@linkcode runJobs} once with the function that does its jobs.
 *
 * @module
 */
import { type FromWorker, type JobMessage, serializeError, type ToWorker } from "./_messages.ts";
import { type Claim, JobQueue, ReplyRing, RunningJob } from "./_shared.ts";
import type { PoolCodec } from "./codec.ts";

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
 * const options: RunJobsOptions<unknown, Uint8Array> = { transfer: (bytes) => [bytes.buffer as ArrayBuffer] };
 * assert.equal(options.transfer!(new Uint8Array(4)).length, 1);
 * ```
 */
export interface RunJobsOptions<Job, Result, Data = unknown> {
  /**
   * Runs once with the worker's context before the worker reports ready; a
   * throw here fails the worker's start-up.
   */
  setup?: (context: WorkerContext<Data>) => void | Promise<void>;
  /** Objects in a result whose ownership moves to the main thread, when it travels by message. */
  transfer?: (result: Result) => Transferable[];
  /** The codec the pool was created with, if any; see `PoolCodec`. */
  codec?: PoolCodec<Job, Result>;
}

interface WorkerScope {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  close(): void;
}

// Whether runJobs was called: a worker serves one pool.
let runJobsCalled = false;

// A worker that goes from job to job without waiting lets its event loop run
// (timers, messages) at least this often.
const YIELD_EVERY_MS = 10;

/**
 * Serves jobs from the pool inside a worker: takes the oldest job from the
 * pool's shared queue whenever it has none, so one job runs at a time, as on
 * a thread, and the next starts once the previous result has been sent.
 *
 * @param handler Turns a job into its result; a throw becomes the job's rejection.
 * @param options A setup step, what to transfer, and the codec; see {@linkcode RunJobsOptions}.
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
  options: RunJobsOptions<Job, Result, Data> = {},
): void {
  if (runJobsCalled) throw new Error("Cannot run jobs: runJobs was already called in this worker");
  runJobsCalled = true;
  const { setup, transfer, codec } = options;
  const scope = globalThis as unknown as WorkerScope;
  let current: Progress | undefined;
  let stopping = false;
  // Payloads asked for by message, by job position, and those of them cancelled meanwhile.
  const wanted = new Map<number, (message: JobMessage) => void>();
  const cancelledWhileWanted = new Set<number>();
  const { port1, port2 } = new MessageChannel();

  // Lets timers and messages run between jobs.
  function yieldToEventLoop(): Promise<unknown> {
    return new Promise((resolve) => {
      port2.onmessage = resolve;
      port1.postMessage(null);
    });
  }

  async function serve(context: WorkerContext<Data>, number: number, queue: JobQueue, running: RunningJob) {
    const replies = new ReplyRing(running.buffer);
    let lastYield = performance.now();
    while (!stopping) {
      const claim = queue.claim(number, running) ?? await queue.waitForJob(number, running);
      if (claim) await runOne(claim, context, queue, replies, running);
      const now = performance.now();
      if (now - lastYield > YIELD_EVERY_MS) {
        await yieldToEventLoop();
        lastYield = performance.now();
      }
    }
  }

  async function runOne(
    claim: Claim,
    context: WorkerContext<Data>,
    queue: JobQueue,
    replies: ReplyRing,
    running: RunningJob,
  ): Promise<void> {
    const seq = claim.pos;
    try {
      let job: Job;
      if (claim.bytes) {
        job = codec!.readJob(claim.bytes);
      } else {
        scope.postMessage({ type: "want", seq });
        const message = await new Promise<JobMessage>((resolve) => wanted.set(seq, resolve));
        if ("gone" in message) return;
        if (cancelledWhileWanted.delete(seq)) throw cancelled();
        job = message.job as Job;
      }
      const progress = new Progress(seq, scope);
      current = progress;
      let result: Result;
      try {
        result = await handler(job, context, progress);
      } catch (error) {
        scope.postMessage({ type: "result", seq, ok: false, error: serializeError(error) });
        return;
      }
      // After progress messages the result goes by message too, so it arrives after them.
      if (codec && !progress.used) {
        const size = codec.resultSize(result);
        if (size <= ReplyRing.maxInline && replies.write(seq, 0, size, (into) => codec.writeResult(result, into))) {
          queue.signalReply();
          return;
        }
      }
      scope.postMessage({ type: "result", seq, ok: true, result }, transfer?.(result));
    } catch (error) {
      // Cancelled before it began, or the result could not be encoded or cloned.
      scope.postMessage({ type: "result", seq, ok: false, error: serializeError(error) });
    } finally {
      current = undefined;
      running.stop();
    }
  }

  scope.onmessage = (event) => {
    const message = event.data;
    if (message.type === "init") {
      const context: WorkerContext<Data> = { id: message.id, data: message.data as Data };
      const queue = new JobQueue(message.queue);
      const running = new RunningJob(message.running);
      (async () => {
        try {
          await setup?.(context);
        } catch (error) {
          // Reported as a message, not thrown: the pool gives the reason, and the
          // runtime prints no uncaught-error trace for what is a start-up failure.
          scope.postMessage({ type: "setup-failed", error: serializeError(error) });
          return;
        }
        scope.postMessage({ type: "ready" });
        await serve(context, message.worker, queue, running);
      })();
    } else if (message.type === "job") {
      const resolve = wanted.get(message.seq);
      wanted.delete(message.seq);
      resolve?.(message);
    } else if (message.type === "ack") {
      if (message.seq === current?.seq) current.ack();
    } else if (message.type === "cancel") {
      if (message.seq === current?.seq) current.cancel();
      else if (wanted.has(message.seq)) cancelledWhileWanted.add(message.seq);
    } else if (message.type === "stop") {
      // The pool stops workers only once no job is queued or running.
      stopping = true;
      port1.close();
      port2.close();
      scope.postMessage({ type: "stopped" });
      scope.close();
    }
  };
  // Only now can an `init` be received: the pool waits for this before sending it.
  scope.postMessage({ type: "loaded" });
}

// One job's progress channel, with a window of unacknowledged messages.
class Progress implements JobProgress {
  readonly seq: number;
  readonly #scope: WorkerScope;
  #unacked = 0;
  #cancelled = false;
  #abort: AbortController | undefined;
  #waiters: Array<() => void> = [];
  /** Whether anything was emitted. */
  used = false;

  constructor(seq: number, scope: WorkerScope) {
    this.seq = seq;
    this.#scope = scope;
  }

  // Made on first use: most jobs never look at it.
  get signal(): AbortSignal {
    this.#abort ??= new AbortController();
    if (this.#cancelled) this.#abort.abort(cancelled());
    return this.#abort.signal;
  }

  async emit(data: unknown, transfer: Transferable[] = []): Promise<void> {
    while (this.#unacked >= PROGRESS_WINDOW && !this.#cancelled) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    if (this.#cancelled) throw cancelled();
    this.#unacked++;
    this.used = true;
    this.#scope.postMessage({ type: "progress", seq: this.seq, data }, transfer);
  }

  ack(): void {
    this.#unacked--;
    this.#waiters.shift()?.();
  }

  cancel(): void {
    this.#cancelled = true;
    this.#abort?.abort(cancelled());
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

function cancelled(): DOMException {
  return new DOMException("The job's output is no longer wanted", "AbortError");
}
