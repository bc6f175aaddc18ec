/**
 * One client connection: read bytes, frame requests, hand each to the pool,
 * and write the responses back in request order.
 *
 * Theory of operation: the read loop frames as many requests as the bytes
 * hold and starts each one on the pool at once, so pipelined requests run on
 * several workers in parallel. Each response is appended to a promise chain
 * (`#tail`), which writes them strictly in the order the requests arrived.
 * A request that says `Connection: close`, a framing error, or the end of
 * the server's life stops the reading; the connection closes once the chain
 * has written everything before that point.
 *
 * Timeouts are deadlines, not timers: each connection records when its
 * current wait must end (headers, body, or idle keep-alive), and the server
 * sweeps all connections a few times a second with {@linkcode Connection.checkDeadline}.
 *
 * @module
 */
import { type FrameProgress, frameRequest, type RequestLimits, withConnectionClose } from "../http/mod.ts";
import { errorResult, type FileBody, type HandlerJob, type HandlerResult, RETRY_AFTER } from "../exchange/mod.ts";

// Reads from a file being sent: large enough for few system calls, small enough per connection.
const FILE_BUFFER_BYTES = 64 * 1024;
// A connection's first buffer: large enough for a typical request head (it doubles for
// more), small enough that thousands of connections cost little.
const INITIAL_BUFFER = 4 * 1024;
// The least room a read is given; the buffer doubles when less is free.
const MIN_READ = 1024;
// Responses in flight on one connection before we stop reading: a pipelining
// client cannot queue unbounded work.
const MAX_PIPELINED = 16;
// While reading is paused for MAX_PIPELINED, bytes are still read ahead, up to this many in the
// buffer, so that a client that leaves is noticed; past it TCP's flow control holds the client.
const MAX_READ_AHEAD = 64 * 1024;
// Once the server drains, an idle keep-alive connection stays open this long, so that a request
// already on its way (sent before the client could know) gets 503 instead of a bare close.
const DRAIN_GRACE_MS = 500;

const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");

/**
 * A response as the connection receives it: a worker's result, plus, for a
 * streamed body, `more`, which yields the next piece or `null` at the end
 * (and rejects if the stream broke).
 */
export interface Reply extends HandlerResult {
  more?: () => Promise<Uint8Array | null>;
  /** Tells the producer of `more` that its pieces will not be sent, so its worker is freed. */
  abandon?: () => void;
  /**
   * Why the request got no answer from its handler (it threw, timed out, or
   * was dropped); `bytes` then hold the main thread's error response.
   */
  failure?: unknown;
  /** Whether `failure` is worth a log line of its own (a handler's error, with its stack). */
  reportFailure?: boolean;
}

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
 * import { PieceQueue } from "./connection.ts";
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

/** Whether the server takes another request, and whether it is the last one. */
export type Admission = "yes" | "last" | "no";

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly limits: RequestLimits;
  readonly timeouts: ConnectionTimeouts;
  /** Whether the server still takes requests (false once shutting down). */
  accepting(): boolean;
  /** Asks to start one more request. */
  admit(): Admission;
  /**
   * Runs one request on the pool. When `signal` aborts before a worker takes
   * the request, it is dropped and never runs.
   */
  run(job: HandlerJob, signal?: AbortSignal): Promise<Reply>;
  /** Whether {@linkcode ConnectionHost.logRequest} wants each request (false when quiet). */
  readonly logsRequests: boolean;
  /** Called once the response to a request has been written. */
  logRequest(entry: RequestLogEntry): void;
  /** Reports an unexpected failure (never a client's fault). */
  logError(message: string, error: unknown): void;
  /** Reports, in one line, something an operator should know that is not a failure of the server. */
  logNotice(line: string): void;
}

/** How long a connection may wait for each thing, in milliseconds. */
export interface ConnectionTimeouts {
  /** From a request's first byte to the end of its header section. */
  header: number;
  /** From the end of the header section to the end of the body. */
  body: number;
  /** With nothing in flight and nothing received, between requests. */
  keepAlive: number;
  /** For one response write to complete: a client that does not read is gone. */
  send: number;
}

type Waiting = "none" | "first" | "idle" | "header" | "body";

/** What the log records about one request. */
export interface RequestLogEntry {
  /** The request method, or `-` for a request that could not be read. */
  method: string;
  /** The request target, or `-`. */
  target: string;
  /** The status sent, or 499 when the client went away before any answer was sent. */
  status: number;
  /** Bytes of the response written. */
  bytes: number;
  /** Milliseconds from the request's arrival to its response's last byte. */
  ms: number;
  /** The worker that answered; `undefined` when the main thread did. */
  workerId: number | undefined;
  /** The client closed its side (or stopped reading) before the response was complete. */
  clientGone?: boolean;
}

/** The status logged for a request whose client went away before any answer was sent (nginx's convention). */
export const CLIENT_GONE = 499;

/** Serves one accepted connection until it closes. */
export class Connection {
  readonly #conn: Deno.Conn;
  readonly #host: ConnectionHost;
  readonly #remote: HandlerJob["remote"];
  #tail: Promise<void> = Promise.resolve();
  #inflight = 0;
  #closed = false;
  #closeWhenIdle = false;
  #stopReading = false;
  // Bytes received that do not yet make a whole request: #buffer[0, #length).
  #buffer: Uint8Array = new Uint8Array(INITIAL_BUFFER);
  #length = 0;
  #progress: FrameProgress | undefined;
  // Complete requests wait in the buffer while MAX_PIPELINED responses are in flight.
  #backpressure = false;
  // A read into #scratch made while paused, not yet added to the buffer (which parsing may move).
  #ahead: Promise<number | null | "reset"> | undefined;
  #scratch: Uint8Array | undefined;
  #writeDeadline = Infinity;
  // Sends made on the socket so far.
  #sends = 0;
  // The client closed or reset its side; streams in flight are abandoned rather than awaited.
  #peerGone = false;
  readonly #abandons = new Set<() => void>();
  // Aborted when the client goes away (or the connection closes); made for the first request.
  #clientGone: AbortController | undefined;
  // A `Connection: close` request is in flight and no read watches for the client leaving yet.
  #watchPending = false;
  #waiting: Waiting = "first";
  #deadline: number;
  #headSeen = false;
  /** Settles when the connection has closed. */
  readonly done: Promise<void>;

  /**
   * @example
   * ```ts ignore
   * const connection = new Connection(await listener.accept(), host);
   * await connection.done;
   * ```
   */
  constructor(conn: Deno.Conn, host: ConnectionHost) {
    this.#conn = conn;
    this.#host = host;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.#remote = { hostname: addr.hostname, port: addr.port };
    // A client that connects and sends nothing gets the header timeout, then a silent close.
    this.#deadline = performance.now() + host.timeouts.header;
    this.done = this.#serve();
  }

  /**
   * Drains the connection: the last pending response says `Connection: close`
   * and the connection closes after it; an idle one closes after a short
   * grace in which a request that arrives gets 503 and a close.
   */
  closeWhenIdle(): void {
    this.#closeWhenIdle = true;
    if (this.#inflight === 0 && this.#length === 0) {
      this.#deadline = Math.min(this.#deadline, performance.now() + DRAIN_GRACE_MS);
    }
  }

  /**
   * Acts on a passed deadline: an idle connection is closed; a request whose
   * headers or body are late gets 408 and the connection closes after it.
   */
  checkDeadline(now: number): void {
    if (now >= this.#writeDeadline) {
      this.#close(); // the client stopped reading; nothing more can reach it
      return;
    }
    if (this.#watchPending && !this.#closed) {
      this.#watchPending = false;
      this.#watchForClose();
    }
    if (now < this.#deadline || this.#closed || this.#stopReading) return;
    this.#deadline = Infinity;
    if (this.#waiting === "header" || this.#waiting === "body") {
      this.#stopReading = true;
      this.#respondNow(408);
    } else if (this.#inflight === 0) {
      this.#close();
    }
  }

  // Sets what the connection waits for and until when, after any change of state.
  #updateDeadline(): void {
    const { timeouts } = this.#host;
    if (this.#backpressure) {
      this.#waiting = "none";
      this.#deadline = Infinity;
    } else if (this.#length > 0) {
      if (this.#waiting !== "header" && this.#waiting !== "body") {
        this.#waiting = "header";
        this.#deadline = performance.now() + timeouts.header;
      }
      if (this.#headSeen && this.#waiting === "header") {
        this.#waiting = "body";
        this.#deadline = performance.now() + timeouts.body;
      }
    } else if (this.#inflight > 0) {
      this.#waiting = "none";
      this.#deadline = Infinity;
    } else if (this.#waiting !== "idle") {
      this.#waiting = "idle";
      this.#deadline = performance.now() + (this.#closeWhenIdle ? DRAIN_GRACE_MS : timeouts.keepAlive);
    }
  }

  // The free end of the buffer, for the next read; the buffer doubles when little is
  // free, so a large body costs linear copying.
  #room(): Uint8Array {
    this.#reserve(MIN_READ);
    return this.#buffer.subarray(this.#length);
  }

  // Makes room for `n` more bytes in the buffer, doubling it as often as needed.
  #reserve(n: number): void {
    if (this.#buffer.length - this.#length >= n) return;
    let size = this.#buffer.length * 2;
    while (size - this.#length < n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
  }

  // Reads more bytes into the buffer (or takes those a read-ahead brought): "data", "eof" when the
  // client closed its side, "reset" when the socket failed or we closed it.
  async #readMore(): Promise<"data" | "eof" | "reset"> {
    if (this.#ahead) return this.#takeAhead(await this.#ahead);
    try {
      const n = await this.#conn.read(this.#room());
      if (n === null) return "eof";
      this.#length += n;
      return "data";
    } catch {
      return "reset";
    }
  }

  #takeAhead(result: number | null | "reset"): "data" | "eof" | "reset" {
    this.#ahead = undefined;
    if (result === null) return "eof";
    if (result === "reset") return result;
    this.#reserve(result);
    this.#buffer.set(this.#scratch!.subarray(0, result), this.#length);
    this.#length += result;
    return "data";
  }

  // Waits until the responses in flight are written, reading ahead meanwhile (up to
  // MAX_READ_AHEAD bytes in the buffer) so that a client that leaves is noticed: its queued
  // requests are dropped and running ones see their signal abort, instead of holding workers.
  async #pause(): Promise<void> {
    let drained = false;
    const tail = this.#tail.then(() => {
      drained = true;
    });
    while (!drained && !this.#peerGone && !this.#closed && this.#length < MAX_READ_AHEAD) {
      this.#ahead ??= this.#conn.read(this.#scratch ??= new Uint8Array(MIN_READ * 16)).catch(() => "reset" as const);
      const result = await Promise.race([tail.then(() => undefined), this.#ahead]);
      // Drained first: the read stays pending, and the reading loop takes it next.
      if (result === undefined) break;
      this.#ended(this.#takeAhead(result));
    }
    await tail;
  }

  // What a read that brought no data means: the client left (or the socket failed).
  #ended(got: "data" | "eof" | "reset"): void {
    if (got === "data" || this.#closed) return;
    this.#peerLeft();
    // Reset: nothing more can reach the client.
    if (got === "reset") this.#close();
  }

  // Removes the first `n` bytes (one framed request) and returns a copy of them.
  #take(n: number): Uint8Array {
    const taken = this.#buffer.slice(0, n);
    if (this.#length > n) this.#buffer.copyWithin(0, n, this.#length);
    this.#length -= n;
    // Give back the room a large body needed once the connection is between requests.
    if (this.#length === 0 && this.#buffer.length > 4 * INITIAL_BUFFER) this.#buffer = new Uint8Array(INITIAL_BUFFER);
    return taken;
  }

  async #serve(): Promise<void> {
    let continued = false;
    try {
      reading: while (!this.#stopReading) {
        const got = await this.#readMore();
        this.#ended(got);
        if (got !== "data" || this.#closed || this.#stopReading) break;
        this.#updateDeadline();
        while (this.#length > 0) {
          const framed = frameRequest(this.#buffer.subarray(0, this.#length), this.#host.limits, this.#progress);
          if (framed.type === "incomplete") {
            this.#progress = framed.progress;
            if (framed.head && !this.#headSeen) {
              this.#headSeen = true;
              this.#updateDeadline();
            }
            // Invite the body only if the request will be served.
            if (framed.head?.expectContinue && !continued && this.#host.accepting()) {
              continued = true;
              this.#enqueueWrite(CONTINUE);
            }
            break;
          }
          this.#progress = undefined;
          if (framed.type === "error") {
            this.#respondNow(framed.error.status);
            break reading;
          }
          const admission = this.#host.admit();
          if (admission === "no") {
            // Received in full but arriving after the server began to stop: say so, do not drop it.
            this.#respondNow(503);
            break reading;
          }
          const { head, end } = framed;
          const close = !head.keepAlive || admission === "last";
          const job: HandlerJob = { bytes: this.#take(end), close, remote: this.#remote };
          continued = false;
          this.#headSeen = false;
          this.#waiting = "none";
          // When the client goes away, a request still queued is dropped and a running one has its
          // signal aborted, since no answer could reach the client.
          const signal = (this.#clientGone ??= new AbortController()).signal;
          this.#respond(head.method, head.target, this.#host.run(job, signal));
          this.#updateDeadline();
          if (close) {
            // Most answers are written long before the next sweep; a slow one gets watched then.
            this.#watchPending = true;
            break reading;
          }
          if (this.#inflight >= MAX_PIPELINED) {
            this.#backpressure = true;
            this.#updateDeadline();
            await this.#pause();
            this.#backpressure = false;
            if (this.#closed || this.#stopReading || this.#peerGone) break reading;
            this.#waiting = "none";
            this.#updateDeadline();
          }
        }
      }
    } catch (error) {
      this.#host.logError("Connection failed", error);
    }
    await this.#tail;
    this.#close();
  }

  // The client will read nothing more that a stream could send: requests still queued are dropped,
  // running ones see their signal abort, and streams are abandoned, freeing their workers. An
  // answer a handler gives all the same is still written, for a client that only half-closed.
  #peerLeft(): void {
    if (this.#peerGone) return;
    this.#peerGone = true;
    this.#clientGone?.abort();
    for (const abandon of this.#abandons) abandon();
    this.#abandons.clear();
  }

  // After a `Connection: close` request nothing more is read as a request; reading on (and
  // discarding) is how the client's leaving is noticed while its answer is still being made.
  // Started by the deadline sweep, so the many answers that take less than a sweep's period
  // never pay for the read.
  async #watchForClose(): Promise<void> {
    const scratch = new Uint8Array(1024);
    try {
      // A read made ahead while reading was paused goes first: never two reads at once.
      const ahead = this.#ahead && await this.#ahead;
      while (ahead !== null && ahead !== "reset" && !this.#closed) {
        if (await this.#conn.read(scratch) === null) break;
      }
    } catch {
      // reset by the peer, or closed by us
    }
    if (!this.#closed) this.#peerLeft();
  }

  // Answers with an error status from the main thread, after any responses in flight, then closes.
  #respondNow(status: number): void {
    this.#respond("-", "-", Promise.resolve(errorResult(status, status === 503 ? [RETRY_AFTER] : [])));
  }

  #respond(method: string, target: string, result: Promise<Reply>): void {
    // Timed only for the log; the clock is a call into the runtime.
    const start = this.#host.logsRequests ? performance.now() : 0;
    this.#inflight++;
    this.#tail = this.#tail.then(async () => {
      let out: Reply;
      try {
        out = await result;
      } catch (error) {
        out = { ...errorResult(500), failure: error };
      }
      // Draining, the last answer in flight tells the client that the connection ends with it,
      // so the client sends nothing more that would meet a closed socket.
      if (this.#closeWhenIdle && this.#inflight === 1 && !out.close && !this.#peerGone) {
        out = { ...out, bytes: withConnectionClose(out.bytes), close: true };
        this.#stopReading = true;
      }
      const { bytes, complete } = await this.#send(method, target, out);
      // A stream that will not be sent whole (the client left) must not keep its worker producing.
      if (!complete) out.abandon?.();
      // A body cut short cannot be completed or followed: only closing tells the client.
      if (!complete) this.#close();
      this.#inflight--;
      this.#updateDeadline();
      // A client that left before the answer was complete is an ordinary event, logged as such.
      const gone = this.#peerGone || !complete;
      this.#logRequest(
        method,
        target,
        start,
        gone && bytes === 0 ? CLIENT_GONE : out.status,
        bytes,
        out.workerId,
        gone,
      );
      if (out.close || (this.#closeWhenIdle && this.#inflight === 0)) {
        this.#close();
      }
    });
  }

  // Writes one answer: its bytes, then the part of a file or the stream pieces that follow.
  async #send(method: string, target: string, out: Reply): Promise<{ bytes: number; complete: boolean }> {
    if (out.failure !== undefined) {
      // Its client left and the request ended without an answer (dropped from the queue, or the
      // handler stopped when its signal aborted): nothing is sent and nothing is wrong.
      if (this.#peerGone) return { bytes: 0, complete: false };
      if (out.reportFailure) this.#host.logError("Handler failed", out.failure);
    }
    if (out.upgradeRefused) {
      this.#host.logNotice(
        `WebSocket upgrade refused for ${method} ${target}: the app called Deno.upgradeWebSocket, ` +
          "which this server does not serve yet (answered 501)",
      );
    }
    if (!await this.#write(out.bytes)) return { bytes: 0, complete: false };
    let bytes = out.bytes.length;
    if (out.file) {
      const sent = await this.#writeFile(out.file);
      return { bytes: bytes + sent, complete: sent === out.file.length };
    }
    if (out.more && out.abandon) {
      if (this.#peerGone) return { bytes, complete: false };
      this.#abandons.add(out.abandon);
      const { sent, complete } = await this.#writePieces(out.more);
      this.#abandons.delete(out.abandon);
      bytes += sent;
      return { bytes, complete };
    }
    return { bytes, complete: true };
  }

  #logRequest(
    method: string,
    target: string,
    start: number,
    status: number,
    bytes: number,
    workerId: number | undefined,
    clientGone: boolean,
  ): void {
    if (!this.#host.logsRequests) return;
    const ms = performance.now() - start;
    this.#host.logRequest({ method, target, status, bytes, ms, workerId, ...(clientGone ? { clientGone } : {}) });
  }

  #enqueueWrite(bytes: Uint8Array): void {
    this.#tail = this.#tail.then(async () => {
      await this.#write(bytes);
    });
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
    if (this.#closed) return false;
    this.#writeDeadline = performance.now() + this.#host.timeouts.send;
    try {
      let offset = 0;
      while (offset < bytes.length) {
        if (++this.#sends === 2) this.#noDelay();
        offset += await this.#conn.write(bytes.subarray(offset));
      }
      return true;
    } catch {
      this.#close(); // the peer went away, or stopped reading past the send timeout
      return false;
    } finally {
      this.#writeDeadline = Infinity;
    }
  }

  // Nagle's algorithm holds a small send back while an earlier one is unacknowledged. The
  // first send of a connection never waits, so one-response connections skip this call.
  #noDelay(): void {
    try {
      (this.#conn as Deno.TcpConn).setNoDelay?.(true);
    } catch {
      // The peer is gone; the send will say so.
    }
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Closed with answers still owed: they can no longer reach the client.
    if (this.#inflight > 0) this.#peerLeft();
    try {
      this.#conn.close();
    } catch {
      // already closed by the runtime
    }
  }
}
