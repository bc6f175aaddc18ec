/**
 * The worker side of `ThreadPool`: a worker module calls
 * {@linkcode runJobs} once with the function that does its jobs.
 *
 * A worker runs up to its pool's `concurrency` jobs at once. It takes the
 * next job from the shared queue whenever its event loop is free and it has
 * room, so a job that awaits (a timer, a `fetch`) leaves the thread to the
 * others, while a job that blocks the thread keeps this worker from taking
 * anything until it ends. The rules of who takes which job are in
 * `_channel.ts`.
 *
 * @module
 */
import process from "node:process";
import { getHeapStatistics } from "node:v8";
import { parentPort } from "node:worker_threads";
import { type FromWorker, type JobMessage, serializeError, type ToWorker } from "./_messages.ts";
import { type Claim, HEARTBEAT_MS, WorkerEnd } from "./_channel.ts";
import type { PoolCodec } from "./codec.ts";

/**
 * What a worker knows about itself.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { WorkerContext } from "./run_jobs.ts";
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
 * One running job's link to the pool: send parts of its output before its
 * result (the chunks of a streamed response, say), learn that it was
 * cancelled, and learn when everything it sent has been taken.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { JobProgress } from "./run_jobs.ts";
 * const sent: unknown[] = [];
 * const progress: JobProgress = {
 *   emit(data) {
 *     sent.push(data);
 *     return Promise.resolve();
 *   },
 *   flush: () => Promise.resolve(),
 *   signal: new AbortController().signal,
 * };
 * await progress.emit("part");
 * assert.deepEqual(sent, ["part"]);
 * ```
 */
export interface JobProgress {
  /**
   * Sends `data` to the pool's `onProgress` for this job. Resolves at once
   * while fewer than {@linkcode PROGRESS_WINDOW} messages wait to be
   * acknowledged, so a fast producer cannot run ahead of a slow consumer.
   * Rejects with the reason of {@linkcode JobProgress.signal} once the job
   * is cancelled or timed out: the job should stop producing.
   */
  emit(data: unknown, transfer?: Transferable[]): Promise<void>;
  /**
   * Resolves once every message emitted so far has been acknowledged by
   * the pool's caller; rejects as `emit` does once the job is cancelled.
   */
  flush(): Promise<void>;
  /**
   * Aborts when the pool cancels the job (its caller's signal aborted), with
   * an `AbortError`, or when the job runs past its timeout, with a
   * `TimeoutError`; a job waiting on something else can stop at once.
   */
  readonly signal: AbortSignal;
}

/**
 * The function a worker module runs for each job.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { JobHandler } from "./run_jobs.ts";
 * const double: JobHandler<number, number> = (n) => n * 2;
 * const progress = { emit: () => Promise.resolve(), flush: () => Promise.resolve(), signal: AbortSignal.abort() };
 * assert.equal(double(2, { id: 0, data: undefined }, progress), 4);
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
 * import type { RunJobsOptions } from "./run_jobs.ts";
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

// The worker's side of its thread's message port: what it sends to the pool.
interface WorkerScope {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
}

// Whether runJobs was called: a worker serves one pool.
let runJobsCalled = false;

// A worker that goes from job to job without waiting lets its event loop run
// (timers, messages) at least this often.
const YIELD_EVERY_MS = 10;
// Microtask turns a job that needs no timer or I/O takes to end (a rejected handler's error
// reaches its reply in about five); a job still running after them is left to run.
const SETTLE_TURNS = 16;

// Claims between looks at the clock, which costs a call into the runtime.
const CLOCK_EVERY = 16;

// The share of its heap limit past which a worker whose job timed out is taken to have run out of memory.
const HEAP_NEARLY_FULL = 2 / 3;

function heapNearlyFull(limitMb: number): boolean {
  return getHeapStatistics().used_heap_size > limitMb * 1024 * 1024 * HEAP_NEARLY_FULL;
}

/**
 * Serves jobs from the pool inside a worker, up to the pool's `concurrency`
 * at once: whenever its event loop is free and it has room, it takes the
 * oldest queued job and starts it.
 *
 * @param handler Turns a job into its result; a throw becomes the job's rejection.
 * @param options A setup step, what to transfer, and the codec; see {@linkcode RunJobsOptions}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ThreadPool } from "./thread_pool.ts";
 * // tests/fixtures/double_worker.ts is a worker module of two lines:
 * //   import { runJobs } from "../../pool/run_jobs.ts";
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
  if (!parentPort) throw new Error("Cannot run jobs: this module is not running in a pool's worker thread");
  runJobsCalled = true;
  const { setup, transfer, codec } = options;
  const port = parentPort;
  const scope: WorkerScope = {
    postMessage: (message, transfer) => port.postMessage(message, transfer as never),
  };
  // An error no job caught ends the worker, as it would anyway: it takes no more jobs, and the
  // pool, told why in one message, logs one line instead of the runtime's trace and terminates
  // the thread. (Ending it from inside with process.exit can leave the thread spinning in Deno 2.9.)
  const crash = (error: unknown) => {
    if (stopping) return;
    stopping = true;
    end?.retire();
    scope.postMessage({ type: "crashed", error: serializeError(error) });
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);
  const runs = new Map<number, JobRun>();
  // Payloads asked for by message, by job position.
  const wanted = new Map<number, (message: JobMessage) => void>();
  let stopping = false;
  // Wakes the serving loop when a job ends, freeing room.
  let jobEnded: (() => void) | undefined;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  const { port1, port2 } = new MessageChannel();

  // Lets timers and messages run between jobs.
  function yieldToEventLoop(): Promise<unknown> {
    return new Promise((resolve) => {
      port2.onmessage = resolve;
      port1.postMessage(null);
    });
  }

  async function serve(context: WorkerContext<Data>, end: WorkerEnd): Promise<void> {
    end.serving = true;
    let rung = false;
    let lastYield = performance.now();
    let claims = 0;
    while (!stopping) {
      // A rung worker takes one job even while busy: the main thread chose it.
      let allowance = rung ? 1 : 0;
      while (runs.size < end.capacity) {
        if (runs.size > 0 && allowance === 0 && end.idleWorkerWaiting) break;
        const claim = end.claim();
        if (!claim) break;
        allowance = 0;
        start(claim, context, end);
        // A job that ends within a few microtask turns replies before the next one starts,
        // which might block the thread.
        for (let turn = 0; turn < SETTLE_TURNS && runs.has(claim.pos); turn++) await null;
        if (++claims % CLOCK_EVERY === 0 && performance.now() - lastYield > YIELD_EVERY_MS) {
          await yieldToEventLoop();
          lastYield = performance.now();
        }
      }
      if (stopping) break;
      const ended = new Promise<void>((resolve) => jobEnded = resolve);
      if (runs.size >= end.capacity) {
        // Full: nothing to take until a job ends, so the main thread need not ring.
        await ended;
        rung = false;
      } else {
        rung = await end.park(ended);
      }
      jobEnded = undefined;
    }
  }

  // Starts a job; it is in `runs` until it has ended.
  function start(claim: Claim, context: WorkerContext<Data>, end: WorkerEnd): void {
    const seq = claim.pos;
    const run = new JobRun(seq, scope);
    runs.set(seq, run);
    // Beats while jobs are in flight; it stops itself, so jobs in quick succession share one timer.
    heartbeat ??= setInterval(() => {
      if (runs.size > 0) return end.beat();
      clearInterval(heartbeat);
      heartbeat = undefined;
    }, HEARTBEAT_MS);
    (async () => {
      try {
        let job: Job;
        if (claim.bytes) {
          job = codec!.readJob(claim.bytes);
        } else {
          scope.postMessage({ type: "want", seq });
          const message = await new Promise<JobMessage>((resolve) => wanted.set(seq, resolve));
          // Cancelled while queued: the pool has settled it already.
          if ("gone" in message) return;
          run.signal.throwIfAborted();
          job = message.job as Job;
        }
        const result = await handler(job, context, run);
        if (run.dropped) return;
        // After progress messages the result goes by message too, so it arrives after them.
        if (codec && !run.used) {
          const size = codec.resultSize(result);
          if (size <= WorkerEnd.maxInline && end.reply(seq, size, (into) => codec.writeResult(result, into))) {
            finish(run, end);
            end.signalReply();
            return;
          }
        }
        scope.postMessage({ type: "result", seq, ok: true, result }, transfer?.(result));
      } catch (error) {
        // The handler threw, it was cancelled before it began, or its result could not be encoded or cloned.
        if (!run.dropped) scope.postMessage({ type: "result", seq, ok: false, error: serializeError(error) });
      } finally {
        finish(run, end);
      }
    })();
  }

  // The job's room is free again; the reply, if any, was written first.
  function finish(run: JobRun, end: WorkerEnd): void {
    if (runs.get(run.seq) !== run) return;
    runs.delete(run.seq);
    wanted.delete(run.seq);
    end.release(run.seq);
    jobEnded?.();
  }

  let end: WorkerEnd | undefined;
  let heapLimitMb: number | undefined;
  port.on("message", (message: ToWorker) => {
    switch (message.type) {
      case "init": {
        heapLimitMb = message.heapLimitMb;
        const context: WorkerContext<Data> = { id: message.id, data: message.data as Data };
        const attached = end = new WorkerEnd(message.queue, message.number, message.block);
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
          await serve(context, attached);
        })();
        break;
      }
      case "job": {
        const resolve = wanted.get(message.seq);
        wanted.delete(message.seq);
        resolve?.(message);
        break;
      }
      case "ack":
        runs.get(message.seq)?.ack();
        break;
      case "abort": {
        const run = runs.get(message.seq);
        if (!run) break;
        run.abort(message.kind);
        // Deno 2.9 now and then misses reporting a worker that reached its heap limit: the job
        // that ran out of memory just never ends, and the thread goes on with its heap nearly
        // full. When a job times out on a worker holding most of its limit, the worker ends as
        // if the report had come.
        if (message.kind === "timeout" && heapLimitMb !== undefined && heapNearlyFull(heapLimitMb)) {
          crash(new Error("it ran out of memory"));
        }
        // A job the pool has failed already gives back its room now, whatever it does next.
        if (message.kind !== "cancel" && end) finish(run, end);
        break;
      }
      case "stop":
        // The pool stops workers only once no job is queued or running.
        stopping = true;
        if (end) end.serving = false;
        clearInterval(heartbeat);
        port1.close();
        port2.close();
        // The pool terminates the thread once it has this.
        scope.postMessage({ type: "stopped" });
        break;
    }
  });
  // Only now can an `init` be received: the pool waits for this before sending it.
  scope.postMessage({ type: "loaded" });
}

// One running job: its progress channel, with a window of unacknowledged messages, and its signal.
class JobRun implements JobProgress {
  readonly seq: number;
  readonly #scope: WorkerScope;
  #unacked = 0;
  #reason: DOMException | undefined;
  #abort: AbortController | undefined;
  // Made on first use, as most jobs emit nothing.
  #waiters: Array<() => void> | undefined;
  #flushers: Array<{ resolve(): void; reject(error: unknown): void }> | undefined;
  /** Whether anything was emitted. */
  used = false;
  /** Whether the pool has failed the job already: its outcome is not sent. */
  dropped = false;

  constructor(seq: number, scope: WorkerScope) {
    this.seq = seq;
    this.#scope = scope;
  }

  // Made on first use: most jobs never look at it.
  get signal(): AbortSignal {
    this.#abort ??= new AbortController();
    if (this.#reason && !this.#abort.signal.aborted) this.#abort.abort(this.#reason);
    return this.#abort.signal;
  }

  async emit(data: unknown, transfer: Transferable[] = []): Promise<void> {
    while (this.#unacked >= PROGRESS_WINDOW && !this.#reason) {
      await new Promise<void>((resolve) => (this.#waiters ??= []).push(resolve));
    }
    if (this.#reason) throw this.#reason;
    this.#unacked++;
    this.used = true;
    this.#scope.postMessage({ type: "progress", seq: this.seq, data }, transfer);
  }

  flush(): Promise<void> {
    if (this.#reason) return Promise.reject(this.#reason);
    if (this.#unacked === 0) return Promise.resolve();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    (this.#flushers ??= []).push({ resolve, reject });
    return promise;
  }

  ack(): void {
    this.#unacked--;
    this.#waiters?.shift()?.();
    if (this.#unacked === 0 && this.#flushers) { for (const flusher of this.#flushers.splice(0)) flusher.resolve(); }
  }

  abort(kind: "cancel" | "timeout" | "drop"): void {
    if (this.#reason) return;
    this.dropped = kind !== "cancel";
    this.#reason = kind === "timeout"
      ? new DOMException("The job ran past its timeout", "TimeoutError")
      : new DOMException("The job was cancelled", "AbortError");
    this.#abort?.abort(this.#reason);
    for (const wake of this.#waiters?.splice(0) ?? []) wake();
    for (const flusher of this.#flushers?.splice(0) ?? []) flusher.reject(this.#reason);
  }
}
