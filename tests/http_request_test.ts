import assert from "node:assert/strict";
import {
  DEFAULT_LIMITS,
  frameRequest,
  type FrameResult,
  HttpError,
  parseRequest,
  type RequestHead,
  type RequestLimits,
} from "../http/mod.ts";
import { BAD_CASES, bytes, chunkedHead, HOST, limits, small } from "./_malformed.ts";

function text(body: Uint8Array): string {
  return new TextDecoder().decode(body);
}

function describe(result: FrameResult): string {
  switch (result.type) {
    case "incomplete":
      return `incomplete (${result.head === undefined ? "no head" : "with head"})`;
    case "complete":
      return `complete, end ${result.end}`;
    case "error":
      return `error ${result.error.status}: ${result.error.message}`;
  }
}

function expectComplete(result: FrameResult, context: string): { head: RequestHead; end: number } {
  if (result.type !== "complete") assert.fail(`${context}: expected complete, got ${describe(result)}`);
  return result;
}

function expectIncomplete(result: FrameResult, context: string): { head?: RequestHead } {
  if (result.type !== "incomplete") assert.fail(`${context}: expected incomplete, got ${describe(result)}`);
  return result;
}

function expectError(result: FrameResult, context: string): HttpError {
  if (result.type !== "error") assert.fail(`${context}: expected an error, got ${describe(result)}`);
  assert.ok(result.error instanceof HttpError, `${context}: error is not an HttpError`);
  return result.error;
}

// ---------------------------------------------------------------------------
// 1. Splitting

const SPLIT_CASES: ReadonlyArray<{ name: string; request: string; method: string; body: string }> = [
  {
    name: "GET without a body",
    request: `GET /index.html?q=1 HTTP/1.1\r\n${HOST}Accept: */*\r\nUser-Agent: test\r\n\r\n`,
    method: "GET",
    body: "",
  },
  {
    name: "POST with a Content-Length body",
    request: `POST /form HTTP/1.1\r\n${HOST}Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world`,
    method: "POST",
    body: "hello world",
  },
  {
    name: "POST with a chunked body, a chunk extension and a trailer field",
    request: `POST /upload HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n` +
      `5;name="quoted \\" value";flag\r\nhello\r\n` +
      `7 ; ext=token\r\n, world\r\n` +
      `0\r\nX-Checksum: abc\r\n\r\n`,
    method: "POST",
    body: "hello, world",
  },
  {
    name: "HTTP/1.0 request",
    request: "GET /old HTTP/1.0\r\nUser-Agent: ancient\r\n\r\n",
    method: "GET",
    body: "",
  },
  {
    name: "request preceded by empty lines",
    request: `\r\n\r\nGET / HTTP/1.1\r\n${HOST}\r\n`,
    method: "GET",
    body: "",
  },
];

Deno.test("frameRequest() answers incomplete for every proper prefix of a valid request", () => {
  for (const { name, request } of SPLIT_CASES) {
    const all = bytes(request);
    for (let n = 0; n < all.length; n++) {
      expectIncomplete(frameRequest(all.subarray(0, n)), `${name}, first ${n} of ${all.length} bytes`);
    }
  }
});

Deno.test("frameRequest() finds the end of a request once its last byte arrives", () => {
  for (const { name, request, method, body } of SPLIT_CASES) {
    const all = bytes(request);
    const { head, end } = expectComplete(frameRequest(all), name);
    assert.equal(end, all.length, `${name}: end`);
    assert.equal(head.method, method, `${name}: method`);
    assert.equal(text(parseRequest(all).bodyBytes), body, `${name}: body`);
  }
});

Deno.test("frameRequest() gives the head as soon as the header section is complete", () => {
  const request = `POST /form HTTP/1.1\r\n${HOST}Content-Length: 11\r\n\r\nhello world`;
  const headEnd = request.indexOf("\r\n\r\n") + 4;
  const all = bytes(request);
  for (let n = 0; n < all.length; n++) {
    const result = expectIncomplete(frameRequest(all.subarray(0, n)), `first ${n} bytes`);
    assert.equal(result.head !== undefined, n >= headEnd, `first ${n} bytes: head presence`);
    if (result.head !== undefined) assert.equal(result.head.headEnd, headEnd);
  }
});

// ---------------------------------------------------------------------------
// 2. Pipelining

Deno.test("frameRequest() frames pipelined requests one after another", () => {
  const requests = [
    `GET /first HTTP/1.1\r\n${HOST}\r\n`,
    `POST /second HTTP/1.1\r\n${HOST}Content-Length: 3\r\n\r\nabc`,
    `PUT /third HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n`,
  ];
  let buf = bytes(requests.join(""));
  const seen: Array<[string, string, string]> = [];
  for (const [k, request] of requests.entries()) {
    const { head, end } = expectComplete(frameRequest(buf), `request ${k + 1}`);
    assert.equal(end, request.length, `request ${k + 1}: end`);
    seen.push([head.method, head.target, text(parseRequest(buf.subarray(0, end)).bodyBytes)]);
    buf = buf.subarray(end);
  }
  assert.equal(buf.length, 0);
  assert.deepEqual(seen, [["GET", "/first", ""], ["POST", "/second", "abc"], ["PUT", "/third", "xy"]]);
});

Deno.test("frameRequest() completes the first request when a partial second one follows it", () => {
  const first = `POST /a HTTP/1.1\r\n${HOST}Content-Length: 2\r\n\r\nok`;
  const second = `GET /b HTTP/1.1\r\n${HOST}\r\n`;
  for (let n = 0; n < second.length; n++) {
    const buf = bytes(first + second.slice(0, n));
    const { head, end } = expectComplete(frameRequest(buf), `first request plus ${n} bytes of the second`);
    assert.equal(end, first.length);
    assert.equal(head.target, "/a");
    expectIncomplete(frameRequest(buf.subarray(end)), `${n} bytes of the second request`);
  }
});

Deno.test("parseRequest() rejects bytes that hold more or less than one request", () => {
  const one = `GET / HTTP/1.1\r\n${HOST}\r\n`;
  for (const input of [one + one, one + "G", one.slice(0, -1)]) {
    assert.throws(
      () => parseRequest(bytes(input)),
      (error: unknown) => error instanceof HttpError && error.status === 400,
      JSON.stringify(input),
    );
  }
});

// ---------------------------------------------------------------------------
// 3. Bodies, keep-alive and Expect

Deno.test("parseRequest() returns a Content-Length body and the header fields in order", () => {
  const request = parseRequest(
    bytes(`POST /echo HTTP/1.1\r\n${HOST}X-Spaced: \t padded value \t\r\nContent-Length: 5\r\n\r\nhello`),
  );
  assert.equal(request.method, "POST");
  assert.equal(request.target, "/echo");
  assert.equal(request.version, "HTTP/1.1");
  assert.deepEqual(request.body, { kind: "length", length: 5 });
  assert.equal(text(request.bodyBytes), "hello");
  assert.deepEqual(request.headers, [["host", "example.com"], ["x-spaced", "padded value"], ["content-length", "5"]]);
});

Deno.test("parseRequest() decodes a chunked body with upper- and lower-case hex and leading zeros", () => {
  const chunks = [
    "0a\r\n0123456789\r\n",
    "00B\r\nABCDEFGHIJK\r\n",
    "c\r\nlmnopqrstuvw\r\n",
    "0001\r\n!\r\n",
    "000\r\n\r\n",
  ];
  const request = parseRequest(bytes(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n${chunks.join("")}`));
  assert.deepEqual(request.body, { kind: "chunked" });
  assert.equal(text(request.bodyBytes), "0123456789ABCDEFGHIJKlmnopqrstuvw!");
});

Deno.test("parseRequest() decodes an empty chunked body and ignores trailer fields", () => {
  const request = parseRequest(
    bytes(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: Chunked\r\n\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n`),
  );
  assert.equal(request.bodyBytes.length, 0);
  assert.deepEqual(request.headers.map(([name]) => name), ["host", "transfer-encoding"]);
});

Deno.test("parseRequest() keeps body bytes that are not valid UTF-8 intact", () => {
  const request = parseRequest(bytes(`POST / HTTP/1.1\r\n${HOST}Content-Length: 4\r\n\r\n\x00\xff\r\n`));
  assert.deepEqual([...request.bodyBytes], [0x00, 0xff, 0x0d, 0x0a]);
});

Deno.test("frameRequest() treats Content-Length: 0 as no body", () => {
  const all = bytes(`POST / HTTP/1.1\r\n${HOST}Content-Length: 0\r\n\r\n`);
  const { head, end } = expectComplete(frameRequest(all), "Content-Length: 0");
  assert.equal(end, all.length);
  assert.deepEqual(head.body, { kind: "none" });
  assert.equal(parseRequest(all).bodyBytes.length, 0);
});

Deno.test("frameRequest() treats a request without Content-Length or Transfer-Encoding as having no body", () => {
  const request = `POST / HTTP/1.1\r\n${HOST}\r\n`;
  const { head, end } = expectComplete(frameRequest(bytes(request + "GET")), "POST without framing");
  assert.equal(end, request.length);
  assert.deepEqual(head.body, { kind: "none" });
});

Deno.test("frameRequest() keeps HTTP/1.1 connections alive unless Connection: close is sent", () => {
  const cases: ReadonlyArray<[string, boolean]> = [
    ["", true],
    ["Connection: close\r\n", false],
    ["Connection: CLOSE\r\n", false],
    ["Connection: upgrade, close\r\n", false],
    ["Connection: keep-alive\r\n", true],
    ["Connection: keep-alive\r\nConnection: close\r\n", false],
  ];
  for (const [fields, keepAlive] of cases) {
    const { head } = expectComplete(frameRequest(bytes(`GET / HTTP/1.1\r\n${HOST}${fields}\r\n`)), fields);
    assert.equal(head.keepAlive, keepAlive, `HTTP/1.1 with ${JSON.stringify(fields)}`);
  }
});

Deno.test("frameRequest() closes HTTP/1.0 connections unless Connection: keep-alive is sent", () => {
  const cases: ReadonlyArray<[string, boolean]> = [
    ["", false],
    ["Connection: keep-alive\r\n", true],
    ["Connection: Keep-Alive\r\n", true],
    ["Connection: keep-alive, close\r\n", false],
    ["Connection: close\r\n", false],
  ];
  for (const [fields, keepAlive] of cases) {
    const { head } = expectComplete(frameRequest(bytes(`GET / HTTP/1.0\r\n${fields}\r\n`)), fields);
    assert.equal(head.version, "HTTP/1.0");
    assert.equal(head.keepAlive, keepAlive, `HTTP/1.0 with ${JSON.stringify(fields)}`);
  }
});

Deno.test("frameRequest() reports Expect: 100-continue with the head before the body arrives", () => {
  const head = `PUT /file HTTP/1.1\r\n${HOST}Expect: 100-Continue\r\nContent-Length: 4\r\n\r\n`;
  const waiting = expectIncomplete(frameRequest(bytes(head)), "head only");
  assert.ok(waiting.head !== undefined, "the head is known before the body");
  assert.equal(waiting.head.expectContinue, true);
  assert.equal(waiting.head.headEnd, head.length);
  const done = expectComplete(frameRequest(bytes(head + "data")), "head and body");
  assert.equal(done.head.expectContinue, true);
  assert.equal(done.end, head.length + 4);
});

Deno.test("frameRequest() reports Expect: 100-continue for a chunked body", () => {
  const head = `POST / HTTP/1.1\r\n${HOST}Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n`;
  const waiting = expectIncomplete(frameRequest(bytes(head)), "head only");
  assert.equal(waiting.head?.expectContinue, true);
});

Deno.test("frameRequest() ignores Expect: 100-continue on a request without a body", () => {
  for (const fields of ["", "Content-Length: 0\r\n"]) {
    const { head } = expectComplete(
      frameRequest(bytes(`GET / HTTP/1.1\r\n${HOST}Expect: 100-continue\r\n${fields}\r\n`)),
      fields,
    );
    assert.equal(head.expectContinue, false, JSON.stringify(fields));
  }
});

// ---------------------------------------------------------------------------
// 4. Malformed input

Deno.test("frameRequest() and parseRequest() reject malformed requests with the right status", () => {
  assert.ok(BAD_CASES.length >= 40, `only ${BAD_CASES.length} rows`);
  const failures: string[] = [];
  for (const { name, input, status, limits } of BAD_CASES) {
    const all = bytes(input);
    const result = frameRequest(all, limits);
    if (result.type !== "error" || result.error.status !== status) {
      failures.push(`${name} (${JSON.stringify(input.slice(0, 120))}): expected ${status}, got ${describe(result)}`);
      continue;
    }
    assert.ok(result.error instanceof HttpError, `${name}: error is not an HttpError`);
    assert.throws(
      () => parseRequest(all, limits),
      (error: unknown) => error instanceof HttpError && error.status === status,
      `${name}: parseRequest() should throw the same status ${status}`,
    );
  }
  assert.deepEqual(failures, [], `${failures.length} of ${BAD_CASES.length} rows failed:\n${failures.join("\n")}`);
});

Deno.test("frameRequest() rejects a malformed line without waiting for the rest of the request", () => {
  // Each input stops right after its first bad line (or bad line ending); nothing later could fix it.
  const cases: ReadonlyArray<[string, number]> = [
    ["GET / HTTP/1.1\n", 400],
    ["GET / HTTP/1.1\rX", 400],
    ["G@T / HTTP/1.1\r\n", 400],
    ["GET / HTTP/2.0\r\n", 505],
    [`GET /${"a".repeat(DEFAULT_LIMITS.maxRequestLine)}`, 414],
    [`GET / HTTP/1.1\r\n${HOST}X-A : b\r\n`, 400],
    [`GET / HTTP/1.1\r\n${HOST}X-A: \x00\r\n`, 400],
    [`POST / HTTP/1.1\r\n${HOST}Content-Length: ${DEFAULT_LIMITS.maxBody + 1}\r\n\r\n`, 413],
    [`${chunkedHead}0x5\r\n`, 400],
    [`${chunkedHead}5\r\nhelloXY`, 400],
  ];
  for (const [input, status] of cases) {
    const error = expectError(frameRequest(bytes(input)), JSON.stringify(input.slice(0, 80)));
    assert.equal(error.status, status, JSON.stringify(input.slice(0, 80)));
  }
});

Deno.test("frameRequest() refuses a control byte before its line ends; HTAB alone may wait", () => {
  // A line holding NUL or DEL can never become valid, so the client is answered at once instead of
  // at the header timeout.
  for (const input of ["GET /\x00", "G\x1bT", "GET / HTTP/1.\x04", `GET / HTTP/1.1\r\n${HOST}X-A: b\x7f`]) {
    const error = expectError(frameRequest(bytes(input)), JSON.stringify(input));
    assert.equal(error.status, 400, JSON.stringify(input));
  }
  for (const input of ["GET / HTTP/1.1\r\nX-A: b\t", "GET /~", `GET / HTTP/1.1\r\n${HOST}X-A: \x80`]) {
    expectIncomplete(frameRequest(bytes(input)), JSON.stringify(input));
  }
});

Deno.test("frameRequest() accepts unusual but valid requests", () => {
  const cases: ReadonlyArray<{ name: string; input: string; body: string; limits?: RequestLimits }> = [
    { name: "HTTP/1.0 without Host", input: "GET / HTTP/1.0\r\n\r\n", body: "" },
    {
      name: "two identical Content-Length fields",
      input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`,
      body: "hello",
    },
    {
      name: "Content-Length list of identical values",
      input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 5, 5\r\n\r\nhello`,
      body: "hello",
    },
    {
      name: "Content-Length with leading zeros",
      input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 005\r\n\r\nhello`,
      body: "hello",
    },
    { name: "OPTIONS *", input: `OPTIONS * HTTP/1.1\r\n${HOST}\r\n`, body: "" },
    { name: "absolute-form target", input: `GET http://example.com/a?b HTTP/1.1\r\n${HOST}\r\n`, body: "" },
    { name: "unknown method in origin form", input: `PURGE /cache HTTP/1.1\r\n${HOST}\r\n`, body: "" },
    { name: "Host with an empty value", input: "GET / HTTP/1.1\r\nHost:\r\n\r\n", body: "" },
    { name: "header name of every tchar", input: `GET / HTTP/1.1\r\n${HOST}!#$%&'*+-.^_\`|~09Az: v\r\n\r\n`, body: "" },
    { name: "obs-text in a header value", input: `GET / HTTP/1.1\r\n${HOST}X-A: caf\xe9\r\n\r\n`, body: "" },
    { name: "empty header value", input: `GET / HTTP/1.1\r\n${HOST}X-Empty:   \r\n\r\n`, body: "" },
    {
      name: "Transfer-Encoding in mixed case with OWS",
      input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding:  CHUNKED \r\n\r\n1\r\nx\r\n0\r\n\r\n`,
      body: "x",
    },
    {
      name: "chunk extensions with BWS, tokens and quoted pairs",
      input: `${chunkedHead}3 ; a = b ;c;d="e\\"f\\\\" ; g=\t"h i"\r\nabc\r\n0;last\r\n\r\n`,
      body: "abc",
    },
    {
      name: "body exactly at maxBody by Content-Length",
      input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 10\r\n\r\n0123456789`,
      body: "0123456789",
      limits: small,
    },
    {
      name: "body exactly at maxBody by chunks",
      input: `${chunkedHead}4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n`,
      body: "0123456789",
      limits: limits({ maxBody: 10 }),
    },
    {
      name: "request line exactly at maxRequestLine",
      input: `GET /${"a".repeat(32 - "GET / HTTP/1.1".length)} HTTP/1.1\r\nHost: a\r\n\r\n`,
      body: "",
      limits: small,
    },
    {
      name: "header fields exactly at maxHeaderCount",
      input: `GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n`,
      body: "",
      limits: small,
    },
    {
      name: "header section exactly at maxHeaderBytes",
      input: `GET / HTTP/1.1\r\nHost: a\r\nX: ${"v".repeat(64 - "Host: a\r\nX: \r\n\r\n".length)}\r\n\r\n`,
      body: "",
      limits: small,
    },
    {
      name: "Transfer-Encoding with empty list items",
      input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: , chunked,\r\n\r\n1\r\nx\r\n0\r\n\r\n`,
      body: "x",
    },
    {
      name: "chunk size with many leading zeros",
      input: `${chunkedHead}${"0".repeat(20)}1\r\nx\r\n0\r\n\r\n`,
      body: "x",
    },
    { name: "Host with an IPv6 literal and port", input: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", body: "" },
    {
      name: "exactly maxHeaderCount fields",
      input: "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n",
      body: "",
      limits: small,
    },
  ];
  for (const { name, input, body, limits } of cases) {
    const all = bytes(input);
    const { end } = expectComplete(frameRequest(all, limits), name);
    assert.equal(end, all.length, `${name}: end`);
    assert.equal(text(parseRequest(all, limits).bodyBytes), body, `${name}: body`);
  }
});

// ---------------------------------------------------------------------------
// 5. Leading empty lines

Deno.test("frameRequest() skips empty lines before the request line", () => {
  for (const prefix of ["\r\n", "\r\n\r\n", "\r\n".repeat(10)]) {
    const input = `${prefix}GET /after HTTP/1.1\r\n${HOST}\r\n`;
    const { head, end } = expectComplete(frameRequest(bytes(input)), JSON.stringify(prefix));
    assert.equal(end, input.length);
    assert.equal(head.method, "GET");
    assert.equal(head.target, "/after");
    assert.equal(head.headEnd, input.length);
  }
});

Deno.test("frameRequest() skips an empty line sent between pipelined requests", () => {
  const first = `POST /a HTTP/1.1\r\n${HOST}Content-Length: 2\r\n\r\nok`;
  const second = `\r\nGET /b HTTP/1.1\r\n${HOST}\r\n`;
  const buf = bytes(first + second);
  const { end } = expectComplete(frameRequest(buf), "first request");
  assert.equal(end, first.length);
  const next = expectComplete(frameRequest(buf.subarray(end)), "second request");
  assert.equal(next.end, second.length);
  assert.equal(next.head.target, "/b");
});

Deno.test("frameRequest() waits while only empty lines have arrived", () => {
  for (const input of ["", "\r", "\r\n", "\r\n\r", "\r\n\r\n"]) {
    const result = expectIncomplete(frameRequest(bytes(input)), JSON.stringify(input));
    assert.equal(result.head, undefined);
  }
});

Deno.test("DEFAULT_LIMITS is frozen and used when no limits are given", () => {
  assert.ok(Object.isFrozen(DEFAULT_LIMITS));
  const input = bytes(`POST / HTTP/1.1\r\n${HOST}Content-Length: ${DEFAULT_LIMITS.maxBody}\r\n\r\n`);
  assert.equal(frameRequest(input).type, "incomplete");
  assert.deepEqual(frameRequest(input), frameRequest(input, DEFAULT_LIMITS));
});

Deno.test("frameRequest() waits when a request line exactly at the limit is split between CR and LF", () => {
  const line = `GET /${"a".repeat(32 - "GET / HTTP/1.1".length)} HTTP/1.1`;
  assert.equal(line.length, 32);
  expectIncomplete(frameRequest(bytes(`${line}\r`), small), "split at CR");
  expectComplete(frameRequest(bytes(`${line}\r\nHost: a\r\n\r\n`), small), "whole");
});

Deno.test("frameRequest() rejects a long chunk line whether it arrives whole or in part", () => {
  const partial = `${chunkedHead}1;a=${"b".repeat(40)}`;
  assert.equal(expectError(frameRequest(bytes(partial), small), "partial").status, 400);
});

Deno.test("frameRequest() ignores Expect: 100-continue from HTTP/1.0", () => {
  const input = "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  const { head } = expectIncomplete(frameRequest(bytes(input)), "HTTP/1.0 expect");
  assert.equal(head?.expectContinue, false);
});

Deno.test("frameRequest() answers 413 when chunk framing far outweighs the data", () => {
  const line = `1;ext=${"x".repeat(4000)}\r\nZ\r\n`;
  const input = bytes(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n${line.repeat(20)}`);
  const result = frameRequest(input);
  assert.equal(result.type, "error");
  assert.equal(result.type === "error" && result.error.status, 413);
});

Deno.test("frameRequest() goes on from its progress and agrees with a fresh framing", () => {
  const input = bytes(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n`);
  let progress;
  for (let n = 1; n < input.length; n++) {
    const result = frameRequest(input.subarray(0, n), undefined, progress);
    assert.equal(result.type, "incomplete", `prefix ${n}`);
    if (result.type === "incomplete") progress = result.progress;
  }
  const done = frameRequest(input, undefined, progress);
  assert.equal(done.type, "complete");
  assert.equal(done.type === "complete" && done.end, input.length);
});
