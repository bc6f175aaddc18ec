/**
 * Response serialisation: status line, header fields and body as bytes.
 *
 * @module
 */

/** The `Server` header value sent with every response. */
export const SERVER_NAME = "webserver";

/** Reason phrases for the statuses this server sends (RFC 9110 section 15). */
export const STATUS_TEXT: Readonly<Record<number, string>> = Object.freeze({
  100: "Continue",
  200: "OK",
  201: "Created",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  413: "Content Too Large",
  414: "URI Too Long",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
});

/** What {@linkcode serializeResponse} turns into bytes. */
export interface ResponseParts {
  /** The status code. */
  status: number;
  /** Header fields to send, in order; `Date`, `Server` and `Content-Length` are added. */
  headers?: Array<[string, string]>;
  /** The body; its length goes in `Content-Length`. */
  body?: Uint8Array;
  /** Send the headers of the body but not the body itself (a `HEAD` answer). */
  omitBody?: boolean;
  /** Add `Connection: close`. */
  close?: boolean;
  /** Add `Connection: keep-alive`, which an HTTP/1.0 client needs to keep the connection (RFC 9112 section 9.3). */
  keepAlive?: boolean;
  /** The reason phrase; the standard one when absent or empty. */
  reason?: string;
  /**
   * How the body's length is told when the body is not `body` (a file or a
   * stream sent after the head): a byte count for `Content-Length`,
   * `"chunked"` for chunked transfer coding, or `"close"` for neither (the
   * connection's close ends the body).
   */
  length?: number | "chunked" | "close";
}

const encoder = new TextEncoder();
let cachedSecond = -1;
let cachedDate = "";

/**
 * The current time as an HTTP date, computed at most once a second.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { httpDate } from "./response.ts";
 * assert.ok(httpDate().endsWith(" GMT"));
 * ```
 */
export function httpDate(now: number = Date.now()): string {
  const second = Math.floor(now / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedDate = new Date(second * 1000).toUTCString();
  }
  return cachedDate;
}

/**
 * Serialises a response with `Content-Length`, `Date` and `Server` headers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serializeResponse } from "./response.ts";
 * const bytes = serializeResponse({ status: 404, body: new TextEncoder().encode("no") });
 * assert.ok(new TextDecoder().decode(bytes).startsWith("HTTP/1.1 404 Not Found\r\n"));
 * ```
 */
export function serializeResponse(parts: ResponseParts): Uint8Array {
  const { status, headers = [], body, omitBody = false, close = false, keepAlive = false } = parts;
  const length = parts.length ?? body?.length ?? 0;
  let head = `HTTP/1.1 ${status} ${parts.reason || (STATUS_TEXT[status] ?? "Unknown")}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  // RFC 9110 section 8.6: no Content-Length on 1xx and 204; a 304 would describe another response.
  if (status >= 200 && status !== 204 && status !== 304) {
    if (typeof length === "number") head += `Content-Length: ${length}\r\n`;
    else if (length === "chunked") head += "Transfer-Encoding: chunked\r\n";
  }
  head += `Date: ${httpDate()}\r\nServer: ${SERVER_NAME}\r\n`;
  if (close) head += "Connection: close\r\n";
  else if (keepAlive) head += "Connection: keep-alive\r\n";
  head += "\r\n";
  const bodyLength = body === undefined || omitBody ? 0 : body.length;
  const out = encodeWithRoom(head, bodyLength);
  if (bodyLength > 0) out.set(body!, out.length - bodyLength);
  return out;
}

// The head's bytes followed by `room` free bytes, written a character at a time with
// no intermediate buffer. Header values are byte strings, as in `Headers`: each
// character up to U+00FF is one byte (Latin-1), as other servers send them. Only a
// head with a wider character, which `Headers` would refuse, is encoded as UTF-8.
function encodeWithRoom(head: string, room: number): Uint8Array {
  const out = new Uint8Array(head.length + room);
  for (let i = 0; i < head.length; i++) {
    const code = head.charCodeAt(i);
    if (code > 0xff) {
      const bytes = encoder.encode(head);
      const wide = new Uint8Array(bytes.length + room);
      wide.set(bytes);
      return wide;
    }
    out[i] = code;
  }
  return out;
}

/**
 * A short plain-text error response that closes the connection, for requests
 * that cannot be handed to a handler (bad framing, overload, timeouts).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorResponse } from "./response.ts";
 * const text = new TextDecoder().decode(errorResponse(400));
 * assert.ok(text.includes("Connection: close"));
 * ```
 */
export function errorResponse(status: number, extraHeaders: Array<[string, string]> = []): Uint8Array {
  return serializeResponse({ ...errorParts(status, extraHeaders), close: true });
}

/**
 * The parts of every short error answer the server makes, wherever it makes
 * it: `text/plain`, and a body of the status and its reason, `404 Not Found`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorParts } from "./response.ts";
 * const parts = errorParts(405, [["Allow", "GET, HEAD"]]);
 * assert.equal(new TextDecoder().decode(parts.body), "405 Method Not Allowed\n");
 * assert.deepEqual(parts.headers[1], ["Allow", "GET, HEAD"]);
 * ```
 */
export function errorParts(
  status: number,
  extraHeaders: Array<[string, string]> = [],
): { status: number; headers: Array<[string, string]>; body: Uint8Array } {
  return {
    status,
    headers: [["Content-Type", "text/plain; charset=utf-8"], ...extraHeaders],
    body: encoder.encode(`${status} ${STATUS_TEXT[status] ?? "Error"}\n`),
  };
}

const CRLF_CRLF = [13, 10, 13, 10];

/**
 * `response` (a serialized head, and any body bytes after it) with its
 * `Connection` header saying `close`: a `Connection` header already there is
 * replaced, otherwise one is added as the head's last header. The body bytes
 * are kept as they are; bytes without a complete head are returned unchanged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serializeResponse, withConnectionClose } from "./response.ts";
 * const bytes = serializeResponse({ status: 200, body: new TextEncoder().encode("hi"), keepAlive: true });
 * const text = new TextDecoder().decode(withConnectionClose(bytes));
 * assert.ok(text.includes("\r\nConnection: close\r\n\r\nhi"));
 * assert.ok(!text.includes("keep-alive"));
 * ```
 */
export function withConnectionClose(response: Uint8Array): Uint8Array {
  const end = indexOfHeadEnd(response);
  if (end === -1) return response;
  // Latin-1, one character per byte, as heads are written.
  let head = "";
  for (let i = 0; i < end + 2; i++) head += String.fromCharCode(response[i]);
  const lines = head.split("\r\n").slice(0, -1);
  const kept = lines.filter((line, i) => i === 0 || !/^connection\s*:/i.test(line));
  const newHead = `${kept.join("\r\n")}\r\nConnection: close\r\n\r\n`;
  const rest = response.subarray(end + 4);
  const out = new Uint8Array(newHead.length + rest.length);
  for (let i = 0; i < newHead.length; i++) out[i] = newHead.charCodeAt(i);
  out.set(rest, newHead.length);
  return out;
}

// Where the blank line that ends a head starts, or -1.
function indexOfHeadEnd(bytes: Uint8Array): number {
  outer: for (let i = 0; i + 4 <= bytes.length; i++) {
    for (let j = 0; j < 4; j++) if (bytes[i + j] !== CRLF_CRLF[j]) continue outer;
    return i;
  }
  return -1;
}
