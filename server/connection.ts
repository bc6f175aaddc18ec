/**
 * One client connection's socket work: the driver of a {@linkcode ConnectionState}.
 *
 * Theory of operation: every decision (framing, keep-alive or close, the
 * order of responses, which timeout applies, when to read) is the state's;
 * this module only does what its actions say. One loop reads while the
 * state's `readMode` allows it and passes the bytes on; each `dispatch` runs
 * a request on the pool and reports its reply; each `send` writes one
 * response (its bytes, then a part of a file or the pieces of a stream) and
 * reports the outcome; the server's sweep fires the state's timer when its
 * deadline has passed. Never two reads at once, never two sends at once.
 *
 * @module
 */
import type { ByteStream } from "./tls.ts";
import { errorResult, type FileBody, type HandlerJob } from "../exchange/mod.ts";
import {
  type Action,
  type ConnectionRules,
  ConnectionState,
  type Reply,
  type RequestLogEntry,
  type SendOutcome,
} from "./connection_state.ts";

// Reads from a file being sent: large enough for few system calls, small enough per connection.
const FILE_BUFFER_BYTES = 64 * 1024;
// A connection's read buffer at first: a typical request in one read, little memory for thousands
// of connections. It doubles while reads fill it (a large body), up to MAX_READ_BUFFER.
const INITIAL_READ_BUFFER = 4 * 1024;
// The largest read buffer: few system calls for a large body, bounded memory per connection.
const MAX_READ_BUFFER = 64 * 1024;

/** What a connection needs from its server: the rules its state keeps, and the server's services. */
export interface ConnectionHost extends ConnectionRules {
  /**
   * Runs one request on the pool. When `signal` aborts before a worker takes
   * the request, it is dropped and never runs.
   */
  run(job: HandlerJob, signal?: AbortSignal, label?: string): Promise<Reply>;
  /** Called once the response to a request has been written. */
  logRequest(entry: RequestLogEntry): void;
  /** Reports an unexpected failure (never a client's fault). */
  logError(message: string, error: unknown): void;
  /** Reports, in one line, something an operator should know that is not a failure of the server. */
  logNotice(line: string): void;
}

/** Serves one accepted connection until it closes. */
export class Connection {
  readonly #conn: ByteStream;
  readonly #host: ConnectionHost;
  readonly #state: ConnectionState;
  #readBuffer = new Uint8Array(INITIAL_READ_BUFFER);
  // Resolves the read loop's wait while the state wants no read.
  #wake: (() => void) | undefined;
  // Aborted when the client goes away (or the connection closes); made for the first request.
  #clientGone: AbortController | undefined;
  #peerGone = false;
  readonly #abandons = new Set<() => void>();
  // Sends made on the socket so far.
  #sends = 0;
  readonly #closed = Promise.withResolvers<void>();
  /** Settles when the connection has closed. */
  readonly done: Promise<void> = this.#closed.promise;

  /**
   * Starts serving `conn`, accepted by the server that `host` stands for.
   *
   * @example
   * ```ts ignore
   * const connection = new Connection(await listener.accept(), host);
   * await connection.done;
   * ```
   */
  constructor(conn: ByteStream, host: ConnectionHost) {
    this.#conn = conn;
    this.#host = host;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.#state = new ConnectionState(host, { hostname: addr.hostname, port: addr.port });
    this.#read();
  }

  /**
   * Drains the connection: the last pending response says `Connection: close`
   * and the connection closes after it; an idle one closes after a short
   * grace in which a request that arrives gets 503 and a close.
   */
  closeWhenIdle(): void {
    this.#apply(this.#state.drain());
  }

  /** Fires the connection's timer if its deadline has passed (`now` from `performance.now()`). */
  checkDeadline(now: number): void {
    if (now >= this.#state.deadline) this.#apply(this.#state.timer());
  }

  async #read(): Promise<void> {
    try {
      for (;;) {
        const mode = this.#state.readMode;
        if (mode === "done") return;
        if (mode === "none") {
          await new Promise<void>((resolve) => this.#wake = resolve);
          continue;
        }
        let n: number | null;
        try {
          n = await this.#conn.read(this.#readBuffer);
        } catch {
          this.#apply(this.#state.failed()); // reset by the peer, or closed by us
          return;
        }
        if (n === null) {
          this.#apply(this.#state.ended());
          return;
        }
        const full = n === this.#readBuffer.length;
        this.#apply(this.#state.received(this.#readBuffer.subarray(0, n)));
        this.#resizeReadBuffer(n, full);
      }
    } catch (error) {
      this.#host.logError("Connection failed", error);
      this.#apply(this.#state.failed());
    }
  }

  // Doubles the read buffer while reads fill it, and gives the room back once they are small again.
  #resizeReadBuffer(n: number, full: boolean): void {
    const size = this.#readBuffer.length;
    if (full && size < MAX_READ_BUFFER) this.#readBuffer = new Uint8Array(size * 2);
    else if (size > INITIAL_READ_BUFFER && n < INITIAL_READ_BUFFER) {
      this.#readBuffer = new Uint8Array(INITIAL_READ_BUFFER);
    }
  }

  #apply(actions: Action[]): void {
    for (const action of actions) {
      switch (action.type) {
        case "dispatch":
          this.#dispatch(action.id, action.job, action.label);
          break;
        case "send":
          this.#send(action.id, action.reply, action.method, action.target);
          break;
        case "log":
          this.#host.logRequest(action.entry);
          break;
        case "peerGone":
          this.#peerLeft();
          break;
        case "close":
          this.#close();
          break;
      }
    }
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #dispatch(id: number, job: HandlerJob, label: string | undefined): void {
    // When the client goes away, a request still queued is dropped and a running one has its
    // signal aborted, since no answer could reach the client.
    const signal = (this.#clientGone ??= new AbortController()).signal;
    this.#host.run(job, signal, label).then(
      (reply) => this.#apply(this.#state.replied(id, reply)),
      (error: unknown) => this.#apply(this.#state.replied(id, { ...errorResult(500), failure: error })),
    );
  }

  #peerLeft(): void {
    this.#peerGone = true;
    this.#clientGone?.abort();
    for (const abandon of this.#abandons) abandon();
    this.#abandons.clear();
  }

  async #send(id: number, reply: Reply, method: string, target: string): Promise<void> {
    let outcome: SendOutcome;
    try {
      outcome = await this.#writeReply(reply, method, target);
    } catch (error) {
      this.#host.logError("Connection failed", error);
      outcome = { bytes: 0, complete: false };
    }
    // A stream that will not be sent whole (the client left) must not keep its worker producing.
    if (!outcome.complete) reply.abandon?.();
    this.#apply(this.#state.sent(id, outcome));
  }

  // Writes one answer: its bytes, then the part of a file or the stream pieces that follow.
  async #writeReply(reply: Reply, method: string, target: string): Promise<SendOutcome> {
    if (reply.reportFailure) this.#host.logError("Handler failed", reply.failure);
    if (reply.upgradeRefused) {
      this.#host.logNotice(
        `WebSocket upgrade refused for ${method} ${target}: the app called Deno.upgradeWebSocket, ` +
          "which this server does not serve yet (answered 501)",
      );
    }
    if (!await this.#write(reply.bytes)) return { bytes: 0, complete: false };
    const bytes = reply.bytes.length;
    if (reply.file) {
      const sent = await this.#writeFile(reply.file);
      return { bytes: bytes + sent, complete: sent === reply.file.length };
    }
    if (reply.more && reply.abandon) {
      if (this.#peerGone) return { bytes, complete: false };
      this.#abandons.add(reply.abandon);
      const { sent, complete } = await this.#writePieces(reply.more);
      this.#abandons.delete(reply.abandon);
      return { bytes: bytes + sent, complete };
    }
    return { bytes, complete: true };
  }

  // Sends part of a file from disk, one buffer at a time; returns the bytes sent.
  async #writeFile(body: FileBody): Promise<number> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(body.path, { read: true });
    } catch (error) {
      this.#host.logError(`Cannot open ${body.path}`, error);
      return 0;
    }
    const buffer = new Uint8Array(FILE_BUFFER_BYTES);
    let sent = 0;
    try {
      await file.seek(body.start, Deno.SeekMode.Start);
      while (sent < body.length) {
        const n = await file.read(buffer.subarray(0, Math.min(buffer.length, body.length - sent)));
        if (n === null) break; // the file shrank since the worker looked
        if (!await this.#write(buffer.subarray(0, n))) break;
        sent += n;
      }
    } catch (error) {
      this.#host.logError(`Cannot read ${body.path}`, error);
    } finally {
      file.close();
    }
    return sent;
  }

  // Sends a streamed body's pieces; says how many bytes went out and whether the body is whole.
  async #writePieces(more: () => Promise<Uint8Array | null>): Promise<{ sent: number; complete: boolean }> {
    let sent = 0;
    for (;;) {
      let piece: Uint8Array | null;
      try {
        piece = await more();
      } catch (error) {
        // A stream stopped because its client left is no failure of the app's.
        if (!this.#peerGone) this.#host.logError("Streamed response failed", error);
        return { sent, complete: false };
      }
      if (piece === null) return { sent, complete: true };
      if (!await this.#write(piece)) return { sent, complete: false };
      sent += piece.length;
    }
  }

  async #write(bytes: Uint8Array): Promise<boolean> {
    if (this.#state.closed) return false;
    this.#state.writing(true);
    try {
      let offset = 0;
      while (offset < bytes.length) {
        if (++this.#sends === 2) this.#noDelay();
        offset += await this.#conn.write(bytes.subarray(offset));
      }
      return true;
    } catch {
      // The peer went away, or stopped reading past the send timeout (and the state closed us).
      this.#apply(this.#state.failed());
      return false;
    } finally {
      this.#state.writing(false);
    }
  }

  // Nagle's algorithm holds a small send back while an earlier one is unacknowledged. The
  // first send of a connection never waits, so one-response connections skip this call.
  #noDelay(): void {
    try {
      this.#conn.setNoDelay?.(true);
    } catch {
      // The peer is gone; the send will say so.
    }
  }

  #close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed by the runtime
    }
    this.#closed.resolve();
  }
}
