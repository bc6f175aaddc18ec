/**
 * The pieces of a streamed response body on their way from a worker to a connection.
 *
 * @module
 */

/**
 * The pieces of one streamed body, from the pool's progress messages to the
 * connection's writes. A piece is acknowledged when the next one is asked
 * for, that is once it has been written (the head, given to the
 * constructor, when the first piece is asked for): the worker runs at most
 * a small window ahead of the client, and learns when everything is out.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PieceQueue } from "./piece_queue.ts";
 * const acked: number[] = [];
 * const queue = new PieceQueue(() => acked.push(0));
 * queue.push(new Uint8Array([1]), () => acked.push(1));
 * queue.end(new Uint8Array([2]));
 * assert.deepEqual(await queue.next(), new Uint8Array([1]));
 * assert.deepEqual(acked, [0]);
 * assert.deepEqual([await queue.next(), await queue.next()], [new Uint8Array([2]), null]);
 * assert.deepEqual(acked, [0, 1]);
 * ```
 */
export class PieceQueue {
  #items: Array<{ bytes: Uint8Array | null; ack?: () => void }> = [];
  #waiter: (() => void) | undefined;
  #error: unknown;
  #failed = false;
  // The acknowledgement of the piece handed out last, due once it has been written.
  #written: (() => void) | undefined;

  /** `headWritten` runs once the response's head has been written: when the first piece is asked for. */
  constructor(headWritten?: () => void) {
    this.#written = headWritten;
  }

  /** Adds a piece; `ack` runs once it has been written. */
  push(bytes: Uint8Array, ack: () => void): void {
    this.#items.push({ bytes, ack });
    this.#wake();
  }

  /** Adds the last bytes (if any) and the end. */
  end(last: Uint8Array): void {
    if (last.length > 0) this.#items.push({ bytes: last });
    this.#items.push({ bytes: null });
    this.#wake();
  }

  /** Ends the stream with an error. */
  fail(error: unknown): void {
    this.#failed = true;
    this.#error = error;
    this.#wake();
  }

  /**
   * The next piece, `null` at the end; rejects after {@linkcode PieceQueue.fail}.
   * Asking for it says the previous piece has been written.
   */
  async next(): Promise<Uint8Array | null> {
    const written = this.#written;
    this.#written = undefined;
    written?.();
    while (this.#items.length === 0) {
      if (this.#failed) throw this.#error;
      await new Promise<void>((resolve) => this.#waiter = resolve);
    }
    const item = this.#items.shift()!;
    this.#written = item.ack;
    return item.bytes;
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}
