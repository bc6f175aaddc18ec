// The connection's decisions, driven without a socket: bytes and events in, actions out, on a
// clock the test moves. The end-to-end tests prove the wiring; these prove the rules.
import assert from "node:assert/strict";
import {
  type Action,
  type Admission,
  ConnectionState,
  CONTINUE,
  DRAIN_GRACE_MS,
  MAX_PIPELINED,
  MAX_READ_AHEAD,
  type Reply,
  type RequestLogEntry,
  WATCH_AFTER_MS,
} from "../server/connection_state.ts";
import { DEFAULT_LIMITS, parseRequest, type RequestLimits } from "../http/mod.ts";

const TIMEOUTS = { header: 10_000, body: 20_000, keepAlive: 5_000, send: 30_000 };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A connection state on a fake clock, with the actions it returned so far and helpers to answer them. */
class Harness {
  now = 1_000;
  admission: Admission = "yes";
  /** The `first` flag of each admit call. */
  readonly firsts: boolean[] = [];
  accepting = true;
  readonly state: ConnectionState;
  readonly actions: Action[] = [];

  constructor(limits: RequestLimits = DEFAULT_LIMITS, secure = false) {
    this.state = new ConnectionState({
      limits,
      secure,
      timeouts: TIMEOUTS,
      admit: (first) => {
        this.firsts.push(first);
        return this.admission;
      },
      accepting: () => this.accepting,
      logsRequests: true,
      now: () => this.now,
    }, { hostname: "127.0.0.1", port: 40000 });
  }

  #keep(actions: Action[]): Action[] {
    this.actions.push(...actions);
    return actions;
  }

  receive(text: string | Uint8Array): Action[] {
    return this.#keep(this.state.received(typeof text === "string" ? encoder.encode(text) : text));
  }

  /** Moves the clock to `at` and fires the timer if it is due, as the server's sweep does. */
  tick(at: number): Action[] {
    this.now = at;
    return at >= this.state.deadline ? this.#keep(this.state.timer()) : [];
  }

  reply(id: number, status = 200, extra: Partial<Reply> = {}): Action[] {
    const bytes = encoder.encode(`HTTP/1.1 ${status} X\r\nContent-Length: 2\r\n\r\nok`);
    return this.#keep(this.state.replied(id, { bytes, status, workerId: 0, close: false, ...extra }));
  }

  sent(id: number, bytes = 40, complete = true): Action[] {
    return this.#keep(this.state.sent(id, { bytes, complete }));
  }

  ended(): Action[] {
    return this.#keep(this.state.ended());
  }

  /** The requests dispatched so far: id, method, target and whether they end the connection. */
  dispatched(): Array<{ id: number; target: string; close: boolean }> {
    return this.actions.flatMap((action) => {
      if (action.type !== "dispatch") return [];
      return [{ id: action.id, target: parseRequest(action.job.bytes).target, close: action.job.close }];
    });
  }

  /** The ids whose response was sent so far, in order. */
  sends(): Array<Extract<Action, { type: "send" }>> {
    return this.actions.filter((action) => action.type === "send");
  }

  logs(): RequestLogEntry[] {
    return this.actions.flatMap((action) => action.type === "log" ? [action.entry] : []);
  }

  closed(): boolean {
    return this.actions.some((action) => action.type === "close");
  }

  /** Answers and sends every request dispatched and not yet answered, in order. */
  serveAll(): void {
    const answered = new Set(this.sends().map((send) => send.id));
    for (const { id } of this.dispatched()) {
      if (answered.has(id)) continue;
      this.reply(id);
      this.sent(id);
    }
  }
}

const get = (path: string, headers = "Host: x\r\n", version = "HTTP/1.1") => `GET ${path} ${version}\r\n${headers}\r\n`;
const statusOf = (send: Extract<Action, { type: "send" }>) => Number(decoder.decode(send.reply.bytes).split(" ")[1]);
const headOf = (send: Extract<Action, { type: "send" }>) => decoder.decode(send.reply.bytes).split("\r\n\r\n")[0];

Deno.test("HTTP/1.1 keeps the connection open after a response, and reads the next request", () => {
  const h = new Harness();
  h.receive(get("/a"));
  assert.deepEqual(h.dispatched(), [{ id: 0, target: "/a", close: false }]);
  h.reply(0);
  assert.equal(h.sends().length, 1);
  h.sent(0);
  assert.ok(!h.closed());
  assert.equal(h.state.readMode, "request");
  h.receive(get("/b"));
  assert.deepEqual(h.dispatched().map((d) => d.target), ["/a", "/b"]);
});

Deno.test("HTTP/1.1 with Connection: close stops reading and closes after its response", () => {
  const h = new Harness();
  h.receive(get("/a", "Host: x\r\nConnection: close\r\n") + get("/after"));
  assert.deepEqual(h.dispatched(), [{ id: 0, target: "/a", close: true }]);
  assert.equal(h.state.readMode, "none");
  h.reply(0, 200, { close: true });
  assert.ok(!h.closed(), "not before the response is written");
  h.sent(0);
  assert.ok(h.closed());
});

Deno.test("HTTP/1.0 closes after its response unless it asks for keep-alive", () => {
  const plain = new Harness();
  plain.receive(get("/", "", "HTTP/1.0"));
  assert.deepEqual(plain.dispatched(), [{ id: 0, target: "/", close: true }]);
  plain.reply(0);
  plain.sent(0);
  assert.ok(plain.closed(), "closed even when the reply does not say so");

  const kept = new Harness();
  kept.receive(get("/", "Connection: keep-alive\r\n", "HTTP/1.0"));
  assert.deepEqual(kept.dispatched(), [{ id: 0, target: "/", close: false }]);
  kept.serveAll();
  assert.ok(!kept.closed());
  assert.equal(kept.state.readMode, "request");
});

Deno.test("pipelined requests are dispatched at once and answered in request order whatever order they finish in", () => {
  const h = new Harness();
  h.receive(get("/1") + get("/2") + get("/3"));
  assert.deepEqual(h.dispatched().map((d) => d.target), ["/1", "/2", "/3"]);
  assert.deepEqual(h.reply(2), [], "the third finished first: nothing may be sent");
  assert.deepEqual(h.reply(1), []);
  const [first] = h.reply(0);
  assert.ok(first.type === "send" && first.id === 0);
  // One send at a time: the next waits for the first to be written.
  const afterFirst = h.sent(0).filter((a) => a.type === "send");
  assert.deepEqual(afterFirst.map((a) => a.type === "send" && a.id), [1]);
  const afterSecond = h.sent(1).filter((a) => a.type === "send");
  assert.deepEqual(afterSecond.map((a) => a.type === "send" && a.id), [2]);
  h.sent(2);
  assert.deepEqual(h.logs().map((entry) => entry.target), ["/1", "/2", "/3"]);
});

Deno.test("a request split into one-byte pieces is framed once whole", () => {
  const h = new Harness();
  const text = get("/split", "Host: x\r\nContent-Length: 3\r\n") + "abc";
  for (const byte of encoder.encode(text)) h.receive(new Uint8Array([byte]));
  assert.deepEqual(h.dispatched().map((d) => d.target), ["/split"]);
  const [dispatch] = h.actions.filter((a) => a.type === "dispatch");
  assert.ok(dispatch.type === "dispatch" && decoder.decode(dispatch.job.bytes) === text);
});

Deno.test(`at most ${MAX_PIPELINED} responses are owed; one more waits until one is sent`, () => {
  const under = new Harness();
  under.receive(Array.from({ length: MAX_PIPELINED - 1 }, (_, i) => get(`/${i}`)).join(""));
  assert.equal(under.state.readMode, "request");

  const h = new Harness();
  h.receive(Array.from({ length: MAX_PIPELINED + 1 }, (_, i) => get(`/${i}`)).join(""));
  assert.equal(h.dispatched().length, MAX_PIPELINED, "the one past the bound waits");
  assert.equal(h.state.readMode, "ahead");
  h.reply(0);
  h.sent(0);
  assert.equal(h.dispatched().length, MAX_PIPELINED + 1);
  assert.equal(h.dispatched().at(-1)?.target, `/${MAX_PIPELINED}`);
});

Deno.test("while paused, bytes are read ahead up to the bound, then reading stops", () => {
  const h = new Harness();
  h.receive(Array.from({ length: MAX_PIPELINED }, (_, i) => get(`/${i}`)).join(""));
  assert.equal(h.state.readMode, "ahead");
  const filler = `POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_READ_AHEAD}\r\n\r\n`;
  h.receive(filler);
  h.receive(new Uint8Array(MAX_READ_AHEAD - filler.length - 1));
  assert.equal(h.state.readMode, "ahead", "one byte under the bound");
  h.receive(new Uint8Array(1));
  assert.equal(h.state.readMode, "none", "at the bound");
  assert.equal(h.dispatched().length, MAX_PIPELINED, "held bytes are not framed while paused");
});

Deno.test("a client that leaves while paused gets its queued requests dropped", () => {
  const h = new Harness();
  h.receive(Array.from({ length: MAX_PIPELINED + 2 }, (_, i) => get(`/${i}`)).join(""));
  const actions = h.ended();
  assert.deepEqual(actions.map((a) => a.type), ["peerGone"]);
  assert.equal(h.state.readMode, "done");
  h.serveAll();
  assert.equal(h.dispatched().length, MAX_PIPELINED, "the requests held back are never run");
  assert.ok(h.closed());
});

Deno.test("Expect: 100-continue is invited once, in order, and only while the server takes requests", () => {
  const head = "POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
  const h = new Harness();
  h.receive(get("/first"));
  h.receive(head);
  // The interim response follows the answer owed before it.
  assert.deepEqual(h.sends(), []);
  h.reply(0);
  h.sent(0);
  const sends = h.sends();
  assert.equal(sends.length, 2);
  assert.equal(sends[1].reply.bytes, CONTINUE);
  h.sent(sends[1].id);
  h.receive("ab");
  h.receive("cd");
  assert.equal(h.sends().length, 2, "invited once");
  assert.deepEqual(h.dispatched().map((d) => d.target), ["/first", "/up"]);
  assert.equal(h.logs().length, 1, "the interim response is not logged");

  const stopping = new Harness();
  stopping.accepting = false;
  stopping.receive(head);
  assert.deepEqual(stopping.sends(), [], "no invitation for a body that would not be served");
});

Deno.test("a connection that sends nothing is closed silently at the header timeout, not before", () => {
  const h = new Harness();
  const start = h.now;
  assert.deepEqual(h.tick(start + TIMEOUTS.header - 1), []);
  assert.deepEqual(h.tick(start + TIMEOUTS.header).map((a) => a.type), ["close"]);
  assert.deepEqual(h.sends(), []);
});

Deno.test("a header section late by the header timeout gets 408, then a close", () => {
  const h = new Harness();
  h.tick(h.now + 5_000);
  const first = h.now;
  h.receive("GET / HTTP/1.1\r\nHo");
  // The timeout runs from the request's first byte.
  assert.deepEqual(h.tick(first + TIMEOUTS.header - 1), []);
  h.receive("st: x\r\n");
  h.tick(first + TIMEOUTS.header);
  const [send] = h.sends();
  assert.equal(statusOf(send), 408);
  assert.equal(h.state.readMode, "none");
  h.sent(send.id);
  assert.ok(h.closed());
  assert.deepEqual(h.logs().map((entry) => [entry.method, entry.status]), [["-", 408]]);
});

Deno.test("a body late by the body timeout (counted from the end of the head) gets 408", () => {
  const h = new Harness();
  h.receive("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  const headEnd = h.now;
  assert.deepEqual(h.tick(headEnd + TIMEOUTS.body - 1), []);
  h.tick(headEnd + TIMEOUTS.body);
  assert.deepEqual(h.sends().map(statusOf), [408]);
});

Deno.test("an idle keep-alive connection closes at the keep-alive timeout, counted from its last response", () => {
  const h = new Harness();
  h.receive(get("/"));
  h.tick(h.now + 60_000); // a slow handler: no timeout runs while a response is owed
  assert.ok(!h.closed());
  h.serveAll();
  const idle = h.now;
  assert.deepEqual(h.tick(idle + TIMEOUTS.keepAlive - 1), []);
  assert.deepEqual(h.tick(idle + TIMEOUTS.keepAlive).map((a) => a.type), ["close"]);
});

Deno.test("a keep-alive connection used again before its timeout starts a fresh one after each response", () => {
  const h = new Harness();
  for (let i = 0; i < 3; i++) {
    h.tick(h.now + TIMEOUTS.keepAlive - 1);
    h.receive(get(`/${i}`));
    h.serveAll();
  }
  assert.ok(!h.closed(), "each use came one millisecond before the timeout");
  const idle = h.now;
  assert.deepEqual(h.tick(idle + TIMEOUTS.keepAlive - 1), []);
  assert.deepEqual(h.tick(idle + TIMEOUTS.keepAlive).map((a) => a.type), ["close"]);
});

Deno.test("a response whose write takes past the send timeout closes the connection", () => {
  const h = new Harness();
  h.receive(get("/"));
  h.reply(0);
  h.state.writing(true);
  const start = h.now;
  assert.deepEqual(h.tick(start + TIMEOUTS.send - 1), []);
  const actions = h.tick(start + TIMEOUTS.send);
  assert.deepEqual(actions.map((a) => a.type), ["peerGone", "close"]);
  h.state.writing(false);
  h.sent(0, 0, false);
  assert.deepEqual(h.logs().map((entry) => [entry.status, entry.clientGone]), [[499, true]]);
});

Deno.test("HEAD is framed like GET and pipelines with what follows", () => {
  const h = new Harness();
  h.receive(`HEAD / HTTP/1.1\r\nHost: x\r\n\r\n` + get("/next"));
  assert.deepEqual(h.dispatched().map((d) => d.target), ["/", "/next"]);
  h.serveAll();
  assert.deepEqual(h.logs().map((entry) => entry.method), ["HEAD", "GET"]);
  assert.ok(!h.closed());
});

Deno.test("a framing error mid-body is answered after the responses owed, then the connection closes", () => {
  const h = new Harness();
  h.receive(get("/ok") + "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
  h.receive("zz\r\n" + get("/never"));
  assert.deepEqual(h.dispatched().map((d) => d.target), ["/ok"]);
  assert.equal(h.sends().length, 0, "the error waits for the answer owed before it");
  h.reply(0);
  h.sent(0);
  const sends = h.sends();
  assert.deepEqual(sends.map(statusOf), [200, 400]);
  h.sent(sends[1].id);
  assert.ok(h.closed());
});

Deno.test("a body larger than the limit gets 413 from its head, without waiting for the body", () => {
  const h = new Harness({ ...DEFAULT_LIMITS, maxBody: 10 });
  h.receive("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n");
  assert.deepEqual(h.sends().map(statusOf), [413]);
  const ok = new Harness({ ...DEFAULT_LIMITS, maxBody: 10 });
  ok.receive("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789");
  assert.equal(ok.dispatched().length, 1);
});

Deno.test("a client that closes mid-body gets nothing, and the connection closes", () => {
  const h = new Harness();
  h.receive("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  assert.deepEqual(h.ended().map((a) => a.type), ["peerGone", "close"]);
  assert.deepEqual(h.dispatched(), []);
});

Deno.test("a client that half-closes still gets the answers owed, then the connection closes", () => {
  const h = new Harness();
  h.receive(get("/a") + get("/b"));
  h.ended();
  h.serveAll();
  assert.equal(h.sends().length, 2);
  assert.ok(h.closed());
});

Deno.test("after the client left, a request dropped for it is not answered and is logged as 499", () => {
  const h = new Harness();
  h.receive(get("/gone"));
  h.ended();
  h.reply(0, 503, { failure: new DOMException("dropped", "AbortError") });
  assert.deepEqual(h.sends(), []);
  assert.deepEqual(h.logs().map((entry) => [entry.status, entry.bytes, entry.clientGone]), [[499, 0, true]]);
  assert.ok(h.closed());
});

Deno.test("a response cut short closes the connection", () => {
  const h = new Harness();
  h.receive(get("/a") + get("/b"));
  h.reply(0);
  h.reply(1);
  const actions = h.sent(0, 10, false);
  assert.deepEqual(actions.map((a) => a.type), ["peerGone", "close", "log"]);
  assert.equal(h.sends().length, 1, "nothing follows a body cut short");
});

Deno.test("the server's last request ends its connection; a request after that gets 503 with Retry-After", () => {
  const h = new Harness();
  h.admission = "last";
  h.receive(get("/last"));
  assert.deepEqual(h.dispatched(), [{ id: 0, target: "/last", close: true }]);

  const late = new Harness();
  late.admission = "no";
  late.receive(get("/late"));
  const [send] = late.sends();
  assert.equal(statusOf(send), 503);
  assert.match(headOf(send), /\r\nRetry-After: \d+/i);
  late.sent(send.id);
  assert.ok(late.closed());
});

Deno.test("draining: the last response owed says Connection: close, and the connection closes after it", () => {
  const h = new Harness();
  h.receive(get("/a") + get("/b"));
  h.state.drain();
  h.reply(0);
  const [first] = h.sends();
  assert.doesNotMatch(headOf(first), /connection: close/i, "not the last one owed");
  h.sent(0);
  h.reply(1);
  const [, last] = h.sends();
  assert.match(headOf(last), /\r\nConnection: close/i);
  assert.equal(last.reply.close, true);
  h.sent(1);
  assert.ok(h.closed());
});

Deno.test(`draining: an idle connection closes after ${DRAIN_GRACE_MS} ms; a request in that grace gets 503`, () => {
  const idle = new Harness();
  idle.receive(get("/"));
  idle.serveAll();
  idle.state.drain();
  const start = idle.now;
  assert.deepEqual(idle.tick(start + DRAIN_GRACE_MS - 1), []);
  assert.deepEqual(idle.tick(start + DRAIN_GRACE_MS).map((a) => a.type), ["close"]);

  const arriving = new Harness();
  arriving.receive(get("/"));
  arriving.serveAll();
  arriving.state.drain();
  arriving.admission = "no";
  arriving.receive(get("/on-its-way"));
  assert.deepEqual(arriving.sends().map(statusOf), [200, 503]);
});

Deno.test("admit() is told which request is the connection's first, pipelined or not", () => {
  const h = new Harness();
  h.receive(get("/a") + get("/b"));
  h.serveAll();
  h.receive(get("/c"));
  assert.deepEqual(h.firsts, [true, false, false]);
  // A request refused for its size is answered without asking.
  const refused = new Harness({ ...DEFAULT_LIMITS, maxRequestLine: 20 });
  refused.receive(get("/a-target-longer-than-the-limit"));
  assert.deepEqual(refused.firsts, []);
});

Deno.test(`after the last request, the client's leaving is watched for once the answer takes ${WATCH_AFTER_MS} ms`, () => {
  const h = new Harness();
  h.receive(get("/slow", "Host: x\r\nConnection: close\r\n"));
  const start = h.now;
  assert.equal(h.state.readMode, "none");
  h.tick(start + WATCH_AFTER_MS - 1);
  assert.equal(h.state.readMode, "none");
  h.tick(start + WATCH_AFTER_MS);
  assert.equal(h.state.readMode, "discard");
  assert.deepEqual(h.receive(get("/ignored")), []);
  assert.deepEqual(h.ended().map((a) => a.type), ["peerGone"]);
});

Deno.test("each request's log entry has its method, target, status, bytes, time and worker", () => {
  const h = new Harness();
  h.receive(get("/logged?q=1"));
  h.now += 12;
  h.reply(0, 404, { workerId: 3 });
  h.sent(0, 123);
  assert.deepEqual(h.logs(), [{
    method: "GET",
    target: "/logged?q=1",
    version: "HTTP/1.1",
    remote: "127.0.0.1",
    status: 404,
    bytes: 123,
    ms: 12,
    workerId: 3,
  }]);
});

Deno.test("each request of a TLS connection is marked secure, so its URL is https:", () => {
  for (const secure of [false, true]) {
    const h = new Harness(DEFAULT_LIMITS, secure);
    h.receive(get("/"));
    const [dispatch] = h.actions;
    assert.ok(dispatch.type === "dispatch");
    assert.equal(dispatch.job.secure === true, secure);
  }
});

Deno.test("behind a trusted proxy the forwarded client is the request's address, in its job and its log entry", () => {
  const state = new ConnectionState({
    limits: DEFAULT_LIMITS,
    timeouts: TIMEOUTS,
    admit: () => "yes",
    accepting: () => true,
    logsRequests: true,
    // A stand-in for proxy-addr: the last forwarded address, believed from 127.0.0.1 only.
    clientAddress: (peer, forwardedFor) =>
      peer === "127.0.0.1" && forwardedFor ? forwardedFor.split(",").at(-1)!.trim() : peer,
  }, { hostname: "127.0.0.1", port: 40000 });
  const actions = state.received(encoder.encode(
    get("/a", "Host: x\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.7\r\n") + get("/b"),
  ));
  const [a, b] = actions;
  assert.ok(a.type === "dispatch" && b.type === "dispatch");
  assert.deepEqual(a.job.remote, { hostname: "198.51.100.7", port: 40000 }, "fields joined, the last one");
  assert.deepEqual(b.job.remote, { hostname: "127.0.0.1", port: 40000 }, "no header: the peer");
  const reply = { bytes: encoder.encode("HTTP/1.1 200 OK\r\n\r\n"), status: 200, workerId: 0, close: false };
  state.replied(a.id, reply);
  const logs = state.sent(a.id, { bytes: 19, complete: true }).filter((x) => x.type === "log");
  assert.ok(logs[0]?.type === "log" && logs[0].entry.remote === "198.51.100.7");
});
