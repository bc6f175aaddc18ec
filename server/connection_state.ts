/**
 * What one HTTP/1.1 connection does next, decided without touching a socket.
 *
 * Theory of operation (after h11): {@linkcode ConnectionState} takes events
 * (bytes received, the peer closed or failed, a request's reply ready, a
 * response written, a timer fired, the server draining) and returns
 * {@linkcode Action}s (dispatch this request, send this response, log this
 * line, the peer is gone, close). It never reads, writes or sets a timer: the
 * socket loop in `connection.ts` does what it is told, and tests drive the
 * state directly with bytes and a clock of their own.
 *
 * The rules it keeps:
 * - Requests are framed as soon as their bytes are whole and dispatched at
 *   once, so pipelined requests run in parallel; responses are sent strictly
 *   in request order, one at a time, whatever order they become ready in.
 * - Reading stops after a request that ends the connection (`Connection:
 *   close`, HTTP/1.0 without keep-alive, the server's last request), after a
 *   framing error (answered with its 4xx) and after a timeout (408). The
 *   connection closes once every response before that point has been sent.
 * - At most {@linkcode MAX_PIPELINED} responses are owed at once; past that,
 *   further bytes are only read ahead (up to {@linkcode MAX_READ_AHEAD}) so a
 *   client that leaves is still noticed.
 * - Timeouts are deadlines: {@linkcode ConnectionState.deadline} says when
 *   the driver must call {@linkcode ConnectionState.timer}.
 *
 * @module
 */
import { type FrameProgress, frameRequest, type RequestLimits, withConnectionClose } from "../http/mod.ts";
import { errorResult, type HandlerJob, type HandlerResult, RETRY_AFTER } from "../exchange/mod.ts";

/** Responses owed on one connection before it stops reading: a pipelining client cannot queue unbounded work. */
export const MAX_PIPELINED = 16;
/**
 * While reading is paused for {@linkcode MAX_PIPELINED}, bytes are still read ahead, up to this many
 * held, so that a client that leaves is noticed; past it TCP's flow control holds the client.
 */
export const MAX_READ_AHEAD = 64 * 1024;
/**
 * Once the server drains, an idle connection stays open this long, so that a request already on
 * its way (sent before the client could know) gets an answer instead of a bare close: served if
 * it is the connection's first, 503 otherwise.
 */
export const DRAIN_GRACE_MS = 500;
/**
 * After the last request a connection reads, it starts watching for the client leaving only once the
 * answer has taken this long: most answers are sent sooner, and never pay for the extra read.
 */
export const WATCH_AFTER_MS = 250;
// A connection's buffer when it first needs one: large enough for a typical request head (it
// doubles for more), small enough that thousands of connections cost little.
const INITIAL_BUFFER = 4 * 1024;

/** The interim response that invites a body announced with `Expect: 100-continue`. */
export const CONTINUE: Uint8Array = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");

/** The status logged for a request whose client went away before any answer was sent (nginx's convention). */
export const CLIENT_GONE = 499;

/**
 * A response as the connection receives it: a worker's result, plus, for a
 * streamed body, `more`, which yields the next piece or `null` at the end
 * (and rejects if the stream broke).
 */
export interface Reply extends HandlerResult {
  /** The next piece of a streamed body, `null` at its end. */
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

/** Whether the server takes another request, and whether it is the last one. */
export type Admission = "yes" | "last" | "no";

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

/** What the log records about one request. */
export interface RequestLogEntry {
  /** The request method, or `-` for a request that could not be read. */
  method: string;
  /** The request target, or `-`. */
  target: string;
  /** The request's version, or `-`. */
  version: string;
  /** The client's address. */
  remote: string;
  /** The request's `Referer`, when the rules ask for headers and it has one. */
  referer?: string;
  /** The request's `User-Agent`, when the rules ask for headers and it has one. */
  userAgent?: string;
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

/** What a connection's state needs to know of its server: one object, shared by its connections. */
export interface ConnectionRules {
  /** The size limits requests are framed with. */
  readonly limits: RequestLimits;
  /** How long each wait may take. */
  readonly timeouts: ConnectionTimeouts;
  /** Whether connections are TLS, passed on with each request (its URL is then `https:`). */
  readonly secure?: boolean;
  /**
   * Asks to start one more request; `first` when it is the connection's first. Once the server
   * stops on a signal, a first request is still taken (as the last): its connection was accepted
   * before the listener closed, so the client had no way to know. (`--max-requests` is never
   * exceeded, first request or not.)
   */
  admit(first: boolean): Admission;
  /** Whether the server still takes requests (false once shutting down): a body is invited only then. */
  accepting(): boolean;
  /** Whether each request gets a `log` action. */
  readonly logsRequests: boolean;
  /** Whether each `dispatch` carries a label (`METHOD target`) to show while the request runs. */
  readonly labelsRequests?: boolean;
  /**
   * The client's address for a request from `peer` carrying these `X-Forwarded-For` values (behind
   * a trusted proxy); absent, the peer is the client.
   */
  clientAddress?(peer: string, forwardedFor: string | undefined): string;
  /** Whether log entries carry the request's `Referer` and `User-Agent`. */
  readonly logsHeaders?: boolean;
  /** The clock, in milliseconds; `performance.now` unless a test brings its own. */
  readonly now?: () => number;
}

/** Something the driver must do, in the order given. */
export type Action =
  /** Run this request; report its reply with {@linkcode ConnectionState.replied}. */
  | {
    readonly type: "dispatch";
    readonly id: number;
    readonly job: HandlerJob;
    /** `METHOD target`, to say what the request is while it runs (when the rules ask for labels). */
    readonly label: string | undefined;
  }
  /**
   * Write this response (its bytes, then its file part or stream pieces); report the outcome with
   * {@linkcode ConnectionState.sent}. At most one send is outstanding at a time.
   */
  | {
    readonly type: "send";
    readonly id: number;
    readonly reply: Reply;
    /** The request's method and target (`-` for an answer to a request that could not be read), for log lines. */
    readonly method: string;
    readonly target: string;
  }
  /** Record one finished request. */
  | { readonly type: "log"; readonly entry: RequestLogEntry }
  /** The client will read nothing more: drop its queued requests, abort running ones, abandon streams. */
  | { readonly type: "peerGone" }
  /** Close the socket. Nothing follows. */
  | { readonly type: "close" };

/**
 * What the driver should do with the socket's read side now:
 * - `request`: read, and pass the bytes to {@linkcode ConnectionState.received};
 * - `ahead`: the same, while requests wait for earlier responses (bytes are held, not yet framed);
 * - `discard`: read only to notice the client leaving (bytes passed in are dropped);
 * - `none`: do not read now; the mode changes with a later event;
 * - `done`: never read again.
 */
export type ReadMode = "request" | "ahead" | "discard" | "none" | "done";

/** How a response's write ended. */
export interface SendOutcome {
  /** Bytes written. */
  bytes: number;
  /** Whether the whole response was written. */
  complete: boolean;
}

// "first": connected, nothing received yet (the header timeout, then a silent close).
type Waiting = "none" | "first" | "idle" | "header" | "body";

interface Slot {
  readonly id: number;
  readonly method: string;
  readonly target: string;
  readonly version: string;
  readonly headers?: Array<[string, string]>;
  // The client's address (the peer's, or one a trusted proxy forwarded); unknown for a request not read.
  readonly client?: string;
  readonly start: number;
  // An interim response (100 Continue): written in order, neither counted nor logged.
  readonly interim: boolean;
  reply?: Reply;
}

/**
 * The decisions of one connection, fed by events, answering with actions.
 *
 * @example Two pipelined requests whose replies come back out of order are answered in order.
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConnectionState } from "./connection_state.ts";
 * import { DEFAULT_LIMITS } from "../http/mod.ts";
 *
 * const state = new ConnectionState({
 *   limits: DEFAULT_LIMITS,
 *   timeouts: { header: 10_000, body: 10_000, keepAlive: 5_000, send: 10_000 },
 *   admit: () => "yes",
 *   accepting: () => true,
 *   logsRequests: false,
 * }, { hostname: "127.0.0.1", port: 40000 });
 * const bytes = new TextEncoder().encode("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
 * const [a, b] = state.received(bytes);
 * assert.ok(a.type === "dispatch" && b.type === "dispatch");
 * const reply = (status: number) => ({ bytes: new Uint8Array(1), status, workerId: 0, close: false });
 * assert.deepEqual(state.replied(b.id, reply(201)), []); // not its turn yet
 * const [first] = state.replied(a.id, reply(200));
 * assert.ok(first.type === "send" && first.id === a.id);
 * const [second] = state.sent(a.id, { bytes: 1, complete: true });
 * assert.ok(second.type === "send" && second.id === b.id);
 * ```
 */
export class ConnectionState {
  readonly #rules: ConnectionRules;
  readonly #remote: HandlerJob["remote"];
  readonly #now: () => number;
  // Bytes received that do not yet make a whole request: #buffer[0, #length).
  #buffer: Uint8Array | undefined;
  #length = 0;
  #progress: FrameProgress | undefined;
  #continued = false;
  #headSeen = false;
  #nextId = 0;
  // Responses owed, in request order; the first is being sent when #sending.
  readonly #slots: Slot[] = [];
  #sending = false;
  // Responses owed (interim ones excluded).
  #inflight = 0;
  // No further request is read: after one that ends the connection, an error, or a timeout.
  #stopReading = false;
  // The client closed its side; nothing more can be read.
  #readEnded = false;
  // Past MAX_PIPELINED: complete requests wait in the buffer.
  #backpressure = false;
  // Reading on after the last request, only to notice the client leaving.
  #watching = false;
  #watchAt = Infinity;
  #peerGone = false;
  #closed = false;
  #draining = false;
  // Requests that asked to be admitted.
  #admitted = 0;
  #waiting: Waiting = "first";
  #deadline: number;
  #writeDeadline = Infinity;

  /**
   * Starts a connection just accepted from `remote` (passed on with each request): a client that
   * sends nothing gets the header timeout, then a silent close.
   */
  constructor(rules: ConnectionRules, remote: HandlerJob["remote"]) {
    this.#rules = rules;
    this.#remote = remote;
    this.#now = rules.now ?? performance.now.bind(performance);
    this.#deadline = this.#now() + rules.timeouts.header;
  }

  /** What to do with the read side now. */
  get readMode(): ReadMode {
    if (this.#closed || this.#readEnded) return "done";
    if (this.#stopReading) return this.#watching ? "discard" : "none";
    if (this.#backpressure) return this.#length < MAX_READ_AHEAD ? "ahead" : "none";
    return "request";
  }

  /** When {@linkcode ConnectionState.timer} is next due (`Infinity`: no timer). */
  get deadline(): number {
    if (this.#closed) return Infinity;
    return Math.min(this.#deadline, this.#writeDeadline, this.#watchAt);
  }

  /** Whether the connection has closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes arrived from the client. The state keeps a copy of what it needs; `bytes` may be reused. */
  received(bytes: Uint8Array): Action[] {
    const actions: Action[] = [];
    // After the last request (or the end), bytes only tell that the client is still there.
    if (bytes.length === 0 || this.#stopReading || this.#readEnded || this.#closed) return actions;
    this.#append(bytes);
    if (!this.#backpressure) this.#frame(actions);
    return actions;
  }

  /** The client closed its side (a read returned end of file). Answers owed are still sent. */
  ended(): Action[] {
    const actions: Action[] = [];
    if (this.#closed) return actions;
    this.#readEnded = true;
    this.#peerLeft(actions);
    this.#settle(actions);
    return actions;
  }

  /** The socket failed (reset, or closed under a read): nothing more can reach the client. */
  failed(): Action[] {
    const actions: Action[] = [];
    this.#peerLeft(actions);
    this.#close(actions);
    return actions;
  }

  /** The reply to a dispatched request is ready (a streamed one at its head). */
  replied(id: number, reply: Reply): Action[] {
    const actions: Action[] = [];
    const slot = this.#slots.find((slot) => slot.id === id);
    if (slot === undefined || this.#closed) return actions;
    slot.reply = reply;
    this.#pump(actions);
    return actions;
  }

  /** A write of the response to `id` is starting (`true`) or over (`false`): the send timeout runs meanwhile. */
  writing(active: boolean): void {
    this.#writeDeadline = active ? this.#now() + this.#rules.timeouts.send : Infinity;
  }

  /** The response to `id` (the last `send` action) has been written, in full or not. */
  sent(id: number, outcome: SendOutcome): Action[] {
    const actions: Action[] = [];
    const slot = this.#slots[0];
    if (!this.#sending || slot?.id !== id) return actions;
    this.#sending = false;
    this.#slots.shift();
    this.#finish(slot, outcome, actions);
    this.#pump(actions);
    return actions;
  }

  /**
   * A deadline has passed: a client that stopped reading is dropped; a request whose headers or
   * body are late gets 408 and the connection closes after it; an idle connection closes.
   */
  timer(): Action[] {
    const actions: Action[] = [];
    const now = this.#now();
    if (this.#closed) return actions;
    if (now >= this.#writeDeadline) {
      this.#close(actions); // the client stopped reading; nothing more can reach it
      return actions;
    }
    if (now >= this.#watchAt) {
      this.#watchAt = Infinity;
      if (!this.#readEnded) this.#watching = true;
    }
    if (now < this.#deadline || this.#stopReading) return actions;
    this.#deadline = Infinity;
    if (this.#waiting === "header" || this.#waiting === "body") {
      this.#respondNow(408, actions);
    } else if (this.#inflight === 0) {
      this.#close(actions);
    }
    return actions;
  }

  /**
   * The server drains: the last response owed says `Connection: close` and the connection closes
   * after it; an idle one closes after {@linkcode DRAIN_GRACE_MS}, in which a request that arrives
   * is served if it is the connection's first (see {@linkcode ConnectionRules.admit}), and gets
   * 503 and a close otherwise.
   */
  drain(): Action[] {
    this.#draining = true;
    if (this.#inflight === 0 && this.#length === 0 && !this.#stopReading) {
      this.#waiting = "idle";
      this.#deadline = Math.min(this.#deadline, this.#now() + DRAIN_GRACE_MS);
    }
    return [];
  }

  #append(bytes: Uint8Array): void {
    const need = this.#length + bytes.length;
    if (this.#buffer === undefined || this.#buffer.length < need) {
      let size = this.#buffer?.length ?? INITIAL_BUFFER;
      while (size < need) size *= 2;
      const grown = new Uint8Array(size);
      if (this.#buffer) grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    this.#buffer.set(bytes, this.#length);
    this.#length = need;
  }

  // Removes the first `n` bytes (one framed request) and returns a copy of them.
  #take(n: number): Uint8Array {
    const buffer = this.#buffer!;
    const taken = buffer.slice(0, n);
    if (this.#length > n) buffer.copyWithin(0, n, this.#length);
    this.#length -= n;
    // Give back the room a large body needed once the connection is between requests.
    if (this.#length === 0 && buffer.length > 4 * INITIAL_BUFFER) this.#buffer = undefined;
    return taken;
  }

  // Frames and dispatches every whole request the buffer holds, until reading must stop or pause.
  #frame(actions: Action[]): void {
    while (this.#length > 0 && !this.#stopReading && !this.#backpressure) {
      const framed = frameRequest(this.#buffer!.subarray(0, this.#length), this.#rules.limits, this.#progress);
      if (framed.type === "incomplete") {
        this.#progress = framed.progress;
        if (framed.head) this.#headSeen = true;
        // Invite the body only if the request will be served.
        if (framed.head?.expectContinue && !this.#continued && this.#rules.accepting()) {
          this.#continued = true;
          const id = this.#nextId++;
          this.#slots.push({ id, method: "-", target: "-", version: "-", start: 0, interim: true, reply: CONTINUED });
          this.#pump(actions);
        }
        break;
      }
      this.#progress = undefined;
      this.#continued = false;
      this.#headSeen = false;
      this.#waiting = "none";
      if (framed.type === "error") {
        this.#length = 0;
        this.#respondNow(framed.error.status, actions);
        break;
      }
      const admission = this.#rules.admit(this.#admitted++ === 0);
      if (admission === "no") {
        // Received in full but arriving after the server began to stop: say so, do not drop it.
        this.#length = 0;
        this.#respondNow(503, actions);
        break;
      }
      const { head, end } = framed;
      const close = !head.keepAlive || admission === "last";
      const id = this.#nextId++;
      const client = this.#rules.clientAddress?.(this.#remote.hostname, forwardedFor(head.headers));
      const remote = client === undefined || client === this.#remote.hostname
        ? this.#remote
        : { hostname: client, port: this.#remote.port };
      const job: HandlerJob = { bytes: this.#take(end), close, remote };
      if (this.#rules.secure) job.secure = true;
      const headers = this.#rules.logsHeaders ? head.headers : undefined;
      this.#owe(id, head.method, head.target, head.version, headers, undefined, remote.hostname);
      const label = this.#rules.labelsRequests ? `${head.method} ${head.target}` : undefined;
      actions.push({ type: "dispatch", id, job, label });
      if (close) this.#stop();
      else if (this.#inflight >= MAX_PIPELINED) this.#backpressure = true;
    }
    this.#updateDeadline();
  }

  #owe(
    id: number,
    method: string,
    target: string,
    version: string,
    headers?: Array<[string, string]>,
    reply?: Reply,
    client?: string,
  ): void {
    // Timed only for the log; the clock is a call into the runtime.
    const start = this.#rules.logsRequests ? this.#now() : 0;
    this.#slots.push({ id, method, target, version, headers, client, start, interim: false, reply });
    this.#inflight++;
  }

  // No further request will be read; the client's leaving is watched for if the answers take long.
  #stop(): void {
    this.#stopReading = true;
    this.#backpressure = false;
    this.#waiting = "none";
    this.#deadline = Infinity;
    if (!this.#readEnded) this.#watchAt = this.#now() + WATCH_AFTER_MS;
  }

  // Answers with an error status from the main thread, after any responses owed, then closes.
  #respondNow(status: number, actions: Action[]): void {
    this.#stop();
    this.#owe(this.#nextId++, "-", "-", "-", undefined, errorResult(status, status === 503 ? [RETRY_AFTER] : []));
    this.#pump(actions);
  }

  // Sends the first response owed if it is ready and nothing else is being sent.
  #pump(actions: Action[]): void {
    while (!this.#sending && !this.#closed) {
      const slot = this.#slots[0];
      if (slot?.reply === undefined) break;
      let reply = slot.reply;
      if (reply.failure !== undefined && this.#peerGone) {
        // Its client left and the request ended without an answer (dropped from the queue, or the
        // handler stopped when its signal aborted): nothing is sent and nothing is wrong.
        this.#slots.shift();
        this.#finish(slot, { bytes: 0, complete: false }, actions);
        continue;
      }
      // Draining, the last answer owed tells the client that the connection ends with it, so the
      // client sends nothing more that would meet a closed socket.
      if (this.#draining && !slot.interim && this.#inflight === 1 && !reply.close && !this.#peerGone) {
        reply = { ...reply, bytes: withConnectionClose(reply.bytes), close: true };
        this.#stop();
      }
      this.#sending = true;
      actions.push({ type: "send", id: slot.id, reply, method: slot.method, target: slot.target });
    }
  }

  // Accounts for one response written (or given up), and decides what follows it.
  #finish(slot: Slot, { bytes, complete }: SendOutcome, actions: Action[]): void {
    // A body cut short cannot be completed or followed: only closing tells the client.
    if (!complete) this.#close(actions);
    if (slot.interim) return;
    this.#inflight--;
    const reply = slot.reply!;
    if (this.#rules.logsRequests) {
      // A client that left before the answer was complete is an ordinary event, logged as such.
      const gone = this.#peerGone || !complete;
      const entry: RequestLogEntry = {
        method: slot.method,
        target: slot.target,
        version: slot.version,
        remote: slot.client ?? this.#remote.hostname,
        status: gone && bytes === 0 ? CLIENT_GONE : reply.status,
        bytes,
        ms: this.#now() - slot.start,
        workerId: reply.workerId,
      };
      if (gone) entry.clientGone = true;
      if (slot.headers) {
        for (const [name, value] of slot.headers) {
          if (name === "referer") entry.referer = value;
          else if (name === "user-agent") entry.userAgent = value;
        }
      }
      actions.push({ type: "log", entry });
    }
    if (this.#closed) return;
    if (reply.close || (this.#draining && this.#inflight === 0)) {
      this.#close(actions);
      return;
    }
    if (this.#backpressure && this.#inflight < MAX_PIPELINED && !this.#readEnded) {
      this.#backpressure = false;
      this.#frame(actions);
    }
    this.#settle(actions);
  }

  // Closes once nothing more will be read and nothing more is owed; otherwise sets the next deadline.
  #settle(actions: Action[]): void {
    if ((this.#stopReading || this.#readEnded) && this.#slots.length === 0) this.#close(actions);
    else this.#updateDeadline();
  }

  // Sets what the connection waits for and until when, after any change of state.
  #updateDeadline(): void {
    if (this.#stopReading || this.#closed) return;
    const { timeouts } = this.#rules;
    if (this.#backpressure) {
      this.#waiting = "none";
      this.#deadline = Infinity;
    } else if (this.#length > 0) {
      if (this.#waiting !== "header" && this.#waiting !== "body") {
        this.#waiting = "header";
        this.#deadline = this.#now() + timeouts.header;
      }
      if (this.#headSeen && this.#waiting === "header") {
        this.#waiting = "body";
        this.#deadline = this.#now() + timeouts.body;
      }
    } else if (this.#inflight > 0) {
      this.#waiting = "none";
      this.#deadline = Infinity;
    } else if (this.#waiting !== "idle") {
      this.#waiting = "idle";
      this.#deadline = this.#now() + (this.#draining ? DRAIN_GRACE_MS : timeouts.keepAlive);
    }
  }

  // The client will read nothing more that a stream could send: requests still queued are dropped,
  // running ones see their signal abort, and streams are abandoned. An answer a handler gives all
  // the same is still sent, for a client that only half-closed.
  #peerLeft(actions: Action[]): void {
    if (this.#peerGone || this.#closed) return;
    this.#peerGone = true;
    actions.push({ type: "peerGone" });
  }

  #close(actions: Action[]): void {
    if (this.#closed) return;
    // Closed with answers still owed: they can no longer reach the client.
    if (this.#inflight > 0) this.#peerLeft(actions);
    this.#closed = true;
    this.#deadline = Infinity;
    this.#watchAt = Infinity;
    actions.push({ type: "close" });
  }
}

// The interim reply that the driver writes like any other (its status is never logged).
const CONTINUED: Reply = { bytes: CONTINUE, status: 100, workerId: undefined, close: false };

// Every X-Forwarded-For field of a request, joined as one list (fields may repeat).
function forwardedFor(headers: Array<[string, string]>): string | undefined {
  let value: string | undefined;
  for (const [name, field] of headers) {
    if (name === "x-forwarded-for") value = value === undefined ? field : `${value}, ${field}`;
  }
  return value;
}
