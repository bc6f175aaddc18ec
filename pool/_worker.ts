/**
 * One worker of the pool as the main thread sees it: the book's `Worker`.
 * It owns a thread (a `node:worker_threads` module worker), its end of the job channel, its
 * lifecycle and its counters.
 *
 * Lifecycle: `starting` (the module loads and sets up) → `ready` (taking
 * jobs) → `stopping` (asked to finish) → `dead`. A worker that crashes,
 * fails to start, or is found stuck goes straight to `dead`, and the pool
 * starts another under the same id.
 *
 * @module
 */
import { Worker as Thread } from "node:worker_threads";
import type { QueueBuffers, WorkerPort } from "./_channel.ts";
import type { FromWorker, ToWorker } from "./_messages.ts";
import type { WorkerResourceLimits } from "./options.ts";

/** Where a worker is in its life. */
export type WorkerState = "starting" | "ready" | "stopping" | "dead";

/** What the pool hears from a worker. */
export interface WorkerEvents {
  /** A message other than the start-up and stop handshakes. */
  message(worker: Worker, message: FromWorker): void;
  /** The worker has set up and takes jobs. */
  ready(worker: Worker): void;
  /** The thread failed: an uncaught error, a message it could not read, or a failed start. */
  failed(worker: Worker, detail: string, exitCode?: number): void;
}

/** What a worker is told when its module has loaded, and what its thread is made with. */
export interface WorkerInit {
  /** The pool's `data` option. */
  data: unknown;
  /** The job queue's buffers. */
  queue: QueueBuffers;
  /** Its engine's limits; past its heap limit the thread ends with an out-of-memory error. */
  resourceLimits: WorkerResourceLimits;
}

// A worker asked to stop that has not confirmed within this long is terminated anyway.
const STOP_GRACE_MS = 1000;

/**
 * One worker thread of a pool.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SharedChannel } from "./_channel.ts";
 * import { Worker } from "./_worker.ts";
 * const channel = new SharedChannel();
 * const url = new URL("../tests/fixtures/double_worker.ts", import.meta.url);
 * const { promise, resolve } = Promise.withResolvers<void>();
 * const init = { data: undefined, queue: channel.buffers, resourceLimits: {} };
 * const worker = new Worker(0, url, "doubler", channel.open(1), init, {
 *   message: () => {},
 *   ready: () => resolve(),
 *   failed: () => {},
 * });
 * await promise;
 * assert.equal(worker.state, "ready");
 * await worker.stop();
 * assert.equal(worker.state, "dead");
 * ```
 */
export class Worker {
  /** Its place in the pool, from 0 to size - 1; a replacement takes the same id. */
  readonly id: number;
  /** Its end of the job channel. */
  readonly port: WorkerPort;
  /** Jobs it has finished. */
  served = 0;
  /**
   * Jobs the pool has already failed (timed out, or dropped by their caller)
   * that the thread still holds, with the timeout each had (`Infinity` for none).
   */
  readonly held = new Map<number, number>();
  #state: WorkerState = "starting";
  readonly #thread: Thread;
  readonly #init: WorkerInit;
  readonly #events: WorkerEvents;
  #initSent = false;
  #stopped: (() => void) | undefined;
  // The heartbeat last seen, and when it was seen to change.
  #beat = 0;
  #beatAt = 0;

  /**
   * Starts a thread running `url`, named `name-id`. It is sent `init` once
   * its module says it listens.
   */
  constructor(id: number, url: URL, name: string, port: WorkerPort, init: WorkerInit, events: WorkerEvents) {
    this.id = id;
    this.port = port;
    this.#init = init;
    this.#events = events;
    // A node:worker_threads worker rather than a Web Worker: it says when its thread ends, however
    // it ends (an uncaught error, Deno.exit, close(), a failed start, its heap limit), and takes one.
    this.#thread = new Thread(url, { name: `${name}-${id}`, resourceLimits: init.resourceLimits });
    this.#thread.on("message", (message: FromWorker) => this.#onMessage(message));
    this.#thread.on("error", (error: Error & { code?: string }) => {
      this.#fail(error.code === "ERR_WORKER_OUT_OF_MEMORY" ? "it ran out of memory" : error.message ?? String(error));
    });
    this.#thread.on("messageerror", () => this.#fail("a message could not be deserialized"));
    this.#thread.on("exit", (code: number) => {
      this.#stopped?.();
      this.#fail(`its thread exited with code ${code}`);
    });
  }

  /** Where the worker is in its life. */
  get state(): WorkerState {
    return this.#state;
  }

  /** Its number in the channel: unique among all the workers a pool has started. */
  get number(): number {
    return this.port.number;
  }

  /** The positions of the jobs it holds (a snapshot). */
  inflight(): number[] {
    return this.port.block.inflight();
  }

  /** Sends a message; false when the thread cannot take it (it is gone, or the data does not clone). */
  post(message: ToWorker, transfer: Transferable[] = []): boolean {
    if (this.#state === "dead") return false;
    try {
      // Web and node:worker_threads transferables are the same objects at run time; only their types differ.
      this.#thread.postMessage(message, transfer as never);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * How long, in milliseconds, its event loop has not been seen turning
   * while it held jobs; 0 when it holds none. Call it regularly: each call
   * is an observation.
   */
  stalledFor(now: number): number {
    const { block } = this.port;
    const beat = block.heartbeat;
    if (beat !== this.#beat || block.load === 0) {
      this.#beat = beat;
      this.#beatAt = now;
      return 0;
    }
    return now - this.#beatAt;
  }

  /** Stops the thread at once; it claims no more jobs. */
  terminate(): void {
    if (this.#state === "dead") return;
    this.#state = "dead";
    this.port.block.retire();
    this.#thread.terminate().catch(() => {});
    this.#stopped?.();
  }

  /**
   * Asks the worker to finish and exit, then terminates it. Resolves to
   * false when a ready worker did not confirm in time: its thread is held by
   * synchronous code, which terminating it does not stop.
   */
  async stop(): Promise<boolean> {
    let confirmed = true;
    if (this.#state === "ready") {
      this.#state = "stopping";
      const stopped = new Promise<boolean>((resolve) => this.#stopped = () => resolve(true));
      let timer: ReturnType<typeof setTimeout> | undefined;
      this.#thread.postMessage({ type: "stop" } satisfies ToWorker);
      confirmed = await Promise.race([
        stopped,
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), STOP_GRACE_MS)),
      ]);
      clearTimeout(timer);
    }
    this.terminate();
    return confirmed;
  }

  #onMessage(message: FromWorker): void {
    if (this.#state === "dead") {
      // A replaced worker's last result still counts if its job has not been settled.
      if (message.type === "result") this.#events.message(this, message);
      return;
    }
    switch (message.type) {
      case "loaded":
        // Only the first: a module that called runJobs twice gets one identity.
        if (!this.#initSent) this.#sendInit();
        break;
      case "ready":
        if (this.#state !== "starting") break;
        this.#state = "ready";
        this.#events.ready(this);
        break;
      case "setup-failed":
        this.#fail(message.error.message, message.error.exitCode);
        break;
      case "stopped":
        this.#stopped?.();
        break;
      case "crashed":
        this.#fail(message.error.message);
        break;
      default:
        this.#events.message(this, message);
    }
  }

  #sendInit(): void {
    this.#initSent = true;
    const sent = this.post({
      type: "init",
      id: this.id,
      number: this.number,
      data: this.#init.data,
      queue: this.#init.queue,
      block: this.port.block.buffer,
      heapLimitMb: this.#init.resourceLimits.maxOldGenerationSizeMb,
    });
    // It cannot be told who it is (the pool checked that the data clones): it fails as if it had crashed.
    if (!sent) this.#fail("its start-up data could not be sent");
  }

  // The thread failed or ended without being asked to; a worker that is stopping ends as asked.
  #fail(detail: string, exitCode?: number): void {
    if (this.#state !== "dead" && this.#state !== "stopping") this.#events.failed(this, detail, exitCode);
  }
}
