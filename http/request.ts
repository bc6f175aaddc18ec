/**
 * Request framing and parsing for HTTP/1.1 (RFC 9112), on bytes alone.
 *
 * Theory of operation: the accept loop keeps the bytes a connection has sent
 * so far and calls {@linkcode frameRequest} on them. The framer walks the
 * request line, the header fields and the body framing (`Content-Length` or
 * chunked), checking every byte against the grammar, and answers one of:
 *
 * - `incomplete`: more bytes are needed (with the head, once it is known);
 * - `complete`: one whole request occupies the first `end` bytes;
 * - `error`: the bytes can never become a valid request, with the status
 *   that says why (400, 413, 414, 431, 501, 505, ...).
 *
 * A worker then calls {@linkcode parseRequest} on exactly those bytes to get
 * the header list and the decoded body. Nothing here touches a socket, so
 * every edge case is a unit test on bytes.
 *
 * @module
 */

/** Limits applied while framing; each default is in {@linkcode DEFAULT_LIMITS}. */
export interface RequestLimits {
  /** Longest request line, CR LF excluded; longer gets 414. */
  maxRequestLine: number;
  /** Largest header section (request line excluded); larger gets 431. */
  maxHeaderBytes: number;
  /** Most header fields; more gets 431. */
  maxHeaderCount: number;
  /** Largest body, declared or chunked; larger gets 413. */
  maxBody: number;
}

/** The limits used when none are given. */
export const DEFAULT_LIMITS: Readonly<RequestLimits> = Object.freeze({
  // nginx and Node.js allow 8 KiB request lines; longer URLs are almost always abuse.
  maxRequestLine: 8 * 1024,
  // Node.js allows 16 KiB of headers; browsers with many cookies stay well below.
  maxHeaderBytes: 16 * 1024,
  // Apache's default; real clients send a few dozen at most.
  maxHeaderCount: 100,
  // Enough for forms and JSON; uploads of files want their own, larger setting.
  maxBody: 1024 * 1024,
});

/** An error in the bytes of a request, carrying the status that answers it. */
export class HttpError extends Error {
  /** The response status this error should produce. */
  readonly status: number;

  /**
   * An error answered with `status`; `message` says what was wrong.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HttpError } from "./request.ts";
   * const error = new HttpError(400, "Cannot parse request: bad header");
   * assert.ok(error.status === 400);
   * ```
   */
  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

/** How the body of a request is framed. */
export type BodyFraming =
  | { readonly kind: "none" }
  | { readonly kind: "length"; readonly length: number }
  | { readonly kind: "chunked" };

/** What the framer learns from the request line and header section. */
export interface RequestHead {
  /** The method token, case preserved. */
  method: string;
  /** The request target exactly as sent. */
  target: string;
  /** `"HTTP/1.0"` or `"HTTP/1.1"`. */
  version: "HTTP/1.0" | "HTTP/1.1";
  /** Header fields in order, names in lower case, values trimmed of OWS. */
  headers: Array<[string, string]>;
  /** Whether the connection may carry another request after this one. */
  keepAlive: boolean;
  /** Whether the client waits for `100 Continue` before sending the body. */
  expectContinue: boolean;
  /** How the body is framed. */
  body: BodyFraming;
  /** Offset of the first body byte (the end of the header section). */
  headEnd: number;
}

/**
 * How far the framer got through an incomplete request; passing it back to
 * {@linkcode frameRequest} with the same bytes plus more goes on from there
 * instead of starting over, so framing a body costs time linear in its size.
 */
export interface FrameProgress {
  /** The request's head, parsed once. */
  readonly head: RequestHead;
  /** Where the walk of a chunked body stopped. */
  readonly cursor: Readonly<ChunkCursor>;
}

/** The framer's answer for the bytes seen so far. */
export type FrameResult =
  | { readonly type: "incomplete"; readonly head?: RequestHead; readonly progress?: FrameProgress }
  | { readonly type: "complete"; readonly head: RequestHead; readonly end: number }
  | { readonly type: "error"; readonly error: HttpError };

/** A request parsed in full: its head and decoded body. */
export interface ParsedRequest extends RequestHead {
  /** The body with any chunked framing removed; empty when there is none. */
  bodyBytes: Uint8Array;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const DEL = 0x7f;
const COLON = 0x3a;
const SEMICOLON = 0x3b;

// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA   (RFC 9110 section 5.6.2)
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x41; c <= 0x5a; c++) TOKEN[c] = TOKEN[c + 0x20] = 1;

// field-vchar = VCHAR / obs-text, plus SP and HTAB inside a value.
const FIELD_VALUE = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) FIELD_VALUE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) FIELD_VALUE[c] = 1;
FIELD_VALUE[SP] = FIELD_VALUE[HTAB] = 1;

// Request targets are visible US-ASCII; raw UTF-8 must be percent-encoded.
const TARGET = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) TARGET[c] = 1;

const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) HEX[0x41 + i] = HEX[0x61 + i] = 10 + i;

// A chunk size of 15 hex digits already exceeds any body limit we accept.
const MAX_CHUNK_SIZE_DIGITS = 15;
// Bytes of chunk framing (size lines, extensions, CR LF) allowed beside the data:
// thousands of ordinary chunks, but never megabytes of extensions around a tiny body.
const MAX_CHUNK_FRAMING = 64 * 1024;
// Transfer codings we recognise but do not decode: answered 501, not 400.
const KNOWN_CODINGS = new Set(["gzip", "x-gzip", "deflate", "compress", "x-compress", "br", "zstd"]);

// RFC 9110 section 9 and RFC 5789: the methods whose meaning with * we know.
const HTTP_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]);
// RFC 2326 methods that exist only in RTSP: sent with an HTTP version they mean a confused client.
const RTSP_ONLY_METHODS = new Set([
  "ANNOUNCE",
  "DESCRIBE",
  "GET_PARAMETER",
  "PAUSE",
  "PLAY",
  "RECORD",
  "REDIRECT",
  "SET_PARAMETER",
  "SETUP",
  "TEARDOWN",
]);

// Host = uri-host [ ":" port ] (RFC 9110 section 7.2); empty when the target has no authority.
const HOST_VALUE = /^(?:[A-Za-z0-9._~!$&'()*+,;=%-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?$/;

function latin1(bytes: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

function isOws(c: number): boolean {
  return c === SP || c === HTAB;
}

/**
 * Finds the CR LF that ends the line starting at `start`, rejecting on the way a
 * bare CR, a bare LF, or a control byte other than HTAB, which no line of a head
 * or chunk framing may hold (so a line that can never be valid is refused before
 * it ends). Returns the index of the CR, or -1 when more bytes are needed.
 */
function findLineEnd(buf: Uint8Array, start: number, what: string): number {
  for (let i = start; i < buf.length; i++) {
    const c = buf[i];
    if (c >= SP && c !== DEL) continue;
    if (c === CR) {
      if (i + 1 === buf.length) return -1;
      if (buf[i + 1] === LF) return i;
      throw new HttpError(400, `Cannot parse ${what}: bare CR`);
    }
    if (c === LF) throw new HttpError(400, `Cannot parse ${what}: bare LF`);
    if (c !== HTAB) throw new HttpError(400, `Cannot parse ${what}: control byte 0x${c.toString(16)}`);
  }
  return -1;
}

function parseRequestLine(
  buf: Uint8Array,
  start: number,
  end: number,
): Pick<RequestHead, "method" | "target" | "version"> {
  let i = start;
  while (i < end && TOKEN[buf[i]]) i++;
  if (i === start) throw new HttpError(400, "Cannot parse request line: method is not a token");
  if (buf[i] !== SP) throw new HttpError(400, "Cannot parse request line: expected one space after the method");
  const method = latin1(buf, start, i);
  const targetStart = ++i;
  while (i < end && TARGET[buf[i]]) i++;
  if (i === targetStart) throw new HttpError(400, "Cannot parse request line: request target is empty");
  if (i === end) throw new HttpError(400, "Cannot parse request line: HTTP version is missing");
  if (buf[i] !== SP) throw new HttpError(400, "Cannot parse request line: invalid byte in request target");
  const target = latin1(buf, targetStart, i);
  const versionStart = ++i;
  if (
    end - versionStart !== 8 || buf[versionStart] !== 0x48 || buf[versionStart + 1] !== 0x54 ||
    buf[versionStart + 2] !== 0x54 || buf[versionStart + 3] !== 0x50 || buf[versionStart + 4] !== 0x2f ||
    buf[versionStart + 6] !== 0x2e
  ) {
    throw new HttpError(400, "Cannot parse request line: malformed HTTP version");
  }
  const major = buf[versionStart + 5] - 0x30;
  const minor = buf[versionStart + 7] - 0x30;
  if (major < 0 || major > 9 || minor < 0 || minor > 9) {
    throw new HttpError(400, "Cannot parse request line: malformed HTTP version");
  }
  if (major !== 1 || minor > 1) {
    throw new HttpError(505, `Cannot serve request: HTTP/${major}.${minor} is not supported`);
  }
  checkTargetForm(method, target);
  return { method, target, version: minor === 1 ? "HTTP/1.1" : "HTTP/1.0" };
}

// RFC 9112 section 3.2: origin-form, absolute-form, authority-form (CONNECT only)
// and asterisk-form (OPTIONS only).
function checkTargetForm(method: string, target: string): void {
  if (RTSP_ONLY_METHODS.has(method)) {
    throw new HttpError(400, `Cannot parse request line: ${method} is an RTSP method, not HTTP`);
  }
  if (method === "CONNECT") {
    throw new HttpError(501, "Cannot serve request: CONNECT is not supported");
  }
  if (target === "*") {
    if (method === "OPTIONS") return;
    // A method we do not know (SSDP's M-SEARCH, say) is not implemented here;
    // a known HTTP method with * is malformed.
    if (!HTTP_METHODS.has(method)) throw new HttpError(501, `Cannot serve request: ${method} * is not implemented`);
    throw new HttpError(400, "Cannot parse request line: * is only valid with OPTIONS");
  }
  if (target.charCodeAt(0) === 0x2f) return;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]+/.test(target)) return;
  throw new HttpError(400, "Cannot parse request line: request target is not in origin or absolute form");
}

interface FieldInfo {
  contentLength: number | undefined;
  codings: string[] | undefined;
  hostCount: number;
  close: boolean;
  keepAlive: boolean;
  expectContinue: boolean;
}

function listItems(value: string): string[] {
  return value.split(",").map((v) => v.trim().toLowerCase()).filter((v) => v !== "");
}

function noteField(info: FieldInfo, name: string, value: string): void {
  switch (name) {
    case "content-length": {
      // A list of identical values is allowed (RFC 9110 section 8.6); anything else is not.
      for (const item of value.split(",")) {
        const v = item.trim();
        if (!/^[0-9]+$/.test(v)) {
          throw new HttpError(400, `Cannot parse Content-Length: invalid value ${JSON.stringify(value)}`);
        }
        const n = Number(v);
        if (!Number.isSafeInteger(n)) throw new HttpError(400, "Cannot parse Content-Length: value too large");
        if (info.contentLength !== undefined && info.contentLength !== n) {
          throw new HttpError(400, "Cannot parse Content-Length: conflicting values");
        }
        info.contentLength = n;
      }
      break;
    }
    case "transfer-encoding":
      (info.codings ??= []).push(...listItems(value));
      break;
    case "host":
      info.hostCount++;
      if (!HOST_VALUE.test(value)) {
        throw new HttpError(400, `Cannot parse Host: invalid value ${JSON.stringify(value)}`);
      }
      break;
    case "connection":
      for (const token of listItems(value)) {
        if (token === "close") info.close = true;
        else if (token === "keep-alive") info.keepAlive = true;
      }
      break;
    case "expect":
      if (value.toLowerCase() === "100-continue") info.expectContinue = true;
      else throw new HttpError(417, `Cannot meet expectation ${JSON.stringify(value)}`);
      break;
  }
}

function bodyFraming(info: FieldInfo, version: RequestHead["version"], limits: RequestLimits): BodyFraming {
  if (info.codings !== undefined) {
    if (info.contentLength !== undefined) {
      throw new HttpError(400, "Cannot frame request: both Transfer-Encoding and Content-Length are present");
    }
    if (version === "HTTP/1.0") throw new HttpError(400, "Cannot frame request: Transfer-Encoding in HTTP/1.0");
    const codings = info.codings;
    for (let k = 0; k < codings.length; k++) {
      const coding = codings[k];
      if (coding === "chunked") {
        if (k !== codings.length - 1) {
          throw new HttpError(400, "Cannot frame request: chunked is not the last transfer coding");
        }
      } else if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(coding)) {
        throw new HttpError(400, "Cannot frame request: invalid Transfer-Encoding");
      }
    }
    if (codings[codings.length - 1] !== "chunked") {
      throw new HttpError(400, "Cannot frame request: chunked must be the last transfer coding");
    }
    for (const coding of codings.slice(0, -1)) {
      throw new HttpError(
        501,
        KNOWN_CODINGS.has(coding)
          ? `Cannot decode request: transfer coding ${coding} is not supported`
          : `Cannot decode request: unknown transfer coding ${JSON.stringify(coding)}`,
      );
    }
    return { kind: "chunked" };
  }
  if (info.contentLength !== undefined) {
    if (info.contentLength > limits.maxBody) {
      throw new HttpError(
        413,
        `Cannot accept request: body of ${info.contentLength} bytes exceeds the limit of ${limits.maxBody}`,
      );
    }
    return info.contentLength === 0 ? { kind: "none" } : { kind: "length", length: info.contentLength };
  }
  return { kind: "none" };
}

/**
 * Reads header fields from `start` until the empty line; used for the header
 * section and for chunked trailers. Returns the offset after the empty line, or
 * -1 when more bytes are needed.
 */
function parseFields(
  buf: Uint8Array,
  start: number,
  limits: RequestLimits,
  onField: (name: string, value: string) => void,
): number {
  let pos = start;
  let count = 0;
  for (;;) {
    const lineEnd = findLineEnd(buf, pos, "header field");
    if (lineEnd === -1) {
      if (buf.length - start > limits.maxHeaderBytes) {
        throw new HttpError(431, `Cannot accept request: header section exceeds ${limits.maxHeaderBytes} bytes`);
      }
      return -1;
    }
    if (lineEnd + 2 - start > limits.maxHeaderBytes) {
      throw new HttpError(431, `Cannot accept request: header section exceeds ${limits.maxHeaderBytes} bytes`);
    }
    if (lineEnd === pos) return pos + 2;
    if (++count > limits.maxHeaderCount) {
      throw new HttpError(431, `Cannot accept request: more than ${limits.maxHeaderCount} header fields`);
    }
    if (isOws(buf[pos])) throw new HttpError(400, "Cannot parse header field: obsolete line folding");
    let i = pos;
    while (i < lineEnd && TOKEN[buf[i]]) i++;
    if (i === pos) throw new HttpError(400, "Cannot parse header field: name is not a token");
    if (buf[i] !== COLON) {
      throw new HttpError(
        400,
        isOws(buf[i])
          ? "Cannot parse header field: whitespace before colon"
          : "Cannot parse header field: invalid byte in name",
      );
    }
    const name = latin1(buf, pos, i).toLowerCase();
    let vs = i + 1;
    let ve = lineEnd;
    while (vs < ve && isOws(buf[vs])) vs++;
    while (ve > vs && isOws(buf[ve - 1])) ve--;
    for (let k = vs; k < ve; k++) {
      if (!FIELD_VALUE[buf[k]]) throw new HttpError(400, `Cannot parse header field ${name}: control byte in value`);
    }
    onField(name, latin1(buf, vs, ve));
    pos = lineEnd + 2;
  }
}

/** Where a chunked body's walk stopped, so the next call goes on from there. */
export interface ChunkCursor {
  /** Offset of the next chunk-size line. */
  pos: number;
  /** Data bytes seen so far. */
  total: number;
}

/**
 * Walks a chunked body from `cursor`, which it advances past each whole chunk.
 * Returns the offset just after the trailer section, or -1 when more bytes are
 * needed. When `out` is given, the chunk data is appended to it.
 */
function walkChunks(
  buf: Uint8Array,
  bodyStart: number,
  cursor: ChunkCursor,
  limits: RequestLimits,
  out?: Uint8Array[],
): number {
  for (;;) {
    const { pos } = cursor;
    const lineEnd = findLineEnd(buf, pos, "chunk size");
    const lineLength = lineEnd === -1 ? buf.length - pos - (buf[buf.length - 1] === CR ? 1 : 0) : lineEnd - pos;
    if (lineLength > limits.maxRequestLine) {
      throw new HttpError(400, `Cannot parse chunk size: line exceeds ${limits.maxRequestLine} bytes`);
    }
    // Size lines, extensions and CR LFs count too, so a body cannot be mostly framing.
    if (pos + lineLength - bodyStart - cursor.total > MAX_CHUNK_FRAMING) {
      throw new HttpError(413, `Cannot accept request: chunk framing exceeds ${MAX_CHUNK_FRAMING} bytes`);
    }
    if (lineEnd === -1) return -1;
    let i = pos;
    while (i < lineEnd && buf[i] === 0x30) i++; // leading zeros carry no value
    const significant = i;
    let size = 0;
    while (i < lineEnd && HEX[buf[i]] !== -1) {
      size = size * 16 + HEX[buf[i]];
      i++;
    }
    if (i === pos) throw new HttpError(400, "Cannot parse chunk size: not a hexadecimal number");
    if (i - significant > MAX_CHUNK_SIZE_DIGITS) throw new HttpError(400, "Cannot parse chunk size: too large");
    checkChunkExtensions(buf, i, lineEnd);
    const dataStart = lineEnd + 2;
    if (size === 0) {
      // The trailer section is re-read until complete; it is bounded by maxHeaderBytes.
      return parseFields(buf, dataStart, limits, () => {});
    }
    if (cursor.total + size > limits.maxBody) {
      throw new HttpError(413, `Cannot accept request: chunked body exceeds the limit of ${limits.maxBody} bytes`);
    }
    if (buf.length < dataStart + size + 2) return -1;
    if (buf[dataStart + size] !== CR || buf[dataStart + size + 1] !== LF) {
      throw new HttpError(400, "Cannot parse chunk: data is not followed by CR LF");
    }
    out?.push(buf.subarray(dataStart, dataStart + size));
    cursor.pos = dataStart + size + 2;
    cursor.total += size;
  }
}

// chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val = token / quoted-string.
// Extensions are checked for shape and otherwise ignored.
function checkChunkExtensions(buf: Uint8Array, start: number, end: number): void {
  const bad = () => new HttpError(400, "Cannot parse chunk size: invalid chunk extension");
  let i = start;
  const skipWs = () => {
    while (i < end && isOws(buf[i])) i++;
  };
  while (i < end) {
    skipWs();
    if (buf[i] !== SEMICOLON) throw bad();
    i++;
    skipWs();
    const nameStart = i;
    while (i < end && TOKEN[buf[i]]) i++;
    if (i === nameStart) throw bad();
    skipWs();
    if (i < end && buf[i] === 0x3d) {
      i++;
      skipWs();
      if (buf[i] === 0x22) {
        i++;
        for (;;) {
          if (i >= end) throw bad();
          const c = buf[i];
          if (c === 0x22) break;
          if (c === 0x5c) i++; // quoted-pair: the escaped byte must be a field byte too
          if (i >= end || !FIELD_VALUE[buf[i]]) throw bad();
          i++;
        }
        i++;
      } else {
        const valueStart = i;
        while (i < end && TOKEN[buf[i]]) i++;
        if (i === valueStart) throw bad();
      }
    }
  }
}

function frameHead(buf: Uint8Array, limits: RequestLimits): RequestHead | undefined {
  // RFC 9112 section 2.2: ignore empty lines received before the request line.
  let start = 0;
  while (buf[start] === CR && buf[start + 1] === LF && start < limits.maxRequestLine) start += 2;
  const lineEnd = findLineEnd(buf, start, "request line");
  if (lineEnd === -1) {
    // A trailing CR may be the start of the line's CR LF, so it does not count.
    if (buf.length - start - (buf[buf.length - 1] === CR ? 1 : 0) > limits.maxRequestLine) {
      throw new HttpError(414, `Cannot accept request: request line exceeds ${limits.maxRequestLine} bytes`);
    }
    return undefined;
  }
  if (lineEnd - start > limits.maxRequestLine) {
    throw new HttpError(414, `Cannot accept request: request line exceeds ${limits.maxRequestLine} bytes`);
  }
  const line = parseRequestLine(buf, start, lineEnd);
  const info: FieldInfo = {
    contentLength: undefined,
    codings: undefined,
    hostCount: 0,
    close: false,
    keepAlive: false,
    expectContinue: false,
  };
  const headers: Array<[string, string]> = [];
  const headEnd = parseFields(buf, lineEnd + 2, limits, (name, value) => {
    noteField(info, name, value);
    headers.push([name, value]);
  });
  if (headEnd === -1) return undefined;
  if (info.hostCount > 1 || (line.version === "HTTP/1.1" && info.hostCount === 0)) {
    throw new HttpError(400, `Cannot accept request: needs exactly one Host header, got ${info.hostCount}`);
  }
  const body = bodyFraming(info, line.version, limits);
  const keepAlive = line.version === "HTTP/1.1" ? !info.close : info.keepAlive && !info.close;
  // RFC 9110 section 10.1.1: a 100-continue expectation from HTTP/1.0 is ignored.
  const expectContinue = info.expectContinue && line.version === "HTTP/1.1" && body.kind !== "none";
  return { ...line, headers, keepAlive, expectContinue, body, headEnd };
}

/**
 * Finds where the first request in `buf` ends, checking it strictly on the way.
 *
 * @param buf The bytes received so far, starting at the first byte of a request.
 * @param limits The size limits to enforce.
 * @param progress What an earlier call on a prefix of the same bytes returned, to go on from there.
 * @returns Whether the request is incomplete, complete (and its length), or invalid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { frameRequest } from "./request.ts";
 * const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /x");
 * const result = frameRequest(bytes);
 * assert.ok(result.type === "complete" && result.end === 27);
 * ```
 */
export function frameRequest(
  buf: Uint8Array,
  limits: RequestLimits = DEFAULT_LIMITS,
  progress?: FrameProgress,
): FrameResult {
  try {
    const head = progress?.head ?? frameHead(buf, limits);
    if (head === undefined) return { type: "incomplete" };
    const { body, headEnd } = head;
    if (body.kind === "none") return { type: "complete", head, end: headEnd };
    if (body.kind === "length") {
      const end = headEnd + body.length;
      return buf.length >= end
        ? { type: "complete", head, end }
        : { type: "incomplete", head, progress: { head, cursor: { pos: headEnd, total: 0 } } };
    }
    const cursor = { ...(progress?.cursor ?? { pos: headEnd, total: 0 }) };
    const end = walkChunks(buf, headEnd, cursor, limits);
    return end === -1 ? { type: "incomplete", head, progress: { head, cursor } } : { type: "complete", head, end };
  } catch (error) {
    if (error instanceof HttpError) return { type: "error", error };
    throw error;
  }
}

/**
 * Parses one complete request (as framed by {@linkcode frameRequest}) into its
 * head and decoded body.
 *
 * @param bytes Exactly the bytes of one request.
 * @param limits The limits the bytes were framed with.
 * @throws {HttpError} When the bytes are not one complete, valid request.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRequest } from "./request.ts";
 * const bytes = new TextEncoder().encode(
 *   "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
 * );
 * const request = parseRequest(bytes);
 * assert.ok(new TextDecoder().decode(request.bodyBytes) === "hi");
 * ```
 */
export function parseRequest(bytes: Uint8Array, limits: RequestLimits = DEFAULT_LIMITS): ParsedRequest {
  const result = frameRequest(bytes, limits);
  if (result.type === "error") throw result.error;
  if (result.type === "incomplete" || result.end !== bytes.length) {
    throw new HttpError(400, "Cannot parse request: bytes are not exactly one request");
  }
  const { head } = result;
  if (head.body.kind === "length") return { ...head, bodyBytes: bytes.subarray(head.headEnd, result.end) };
  if (head.body.kind === "none") return { ...head, bodyBytes: new Uint8Array(0) };
  const parts: Uint8Array[] = [];
  walkChunks(bytes, head.headEnd, { pos: head.headEnd, total: 0 }, limits, parts);
  const bodyBytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    bodyBytes.set(part, offset);
    offset += part.length;
  }
  return { ...head, bodyBytes };
}
