// Malformed requests and the status each must get: shared by the unit tests of the framer
// (http_request_test.ts) and the end-to-end tests against a real server (malformed_test.ts).
import { DEFAULT_LIMITS, type RequestLimits } from "../http/mod.ts";

/** Encodes a string one byte per UTF-16 code unit, so "\x80" is the single byte 0x80. */
export function bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff) throw new RangeError(`Cannot encode ${JSON.stringify(text[i])} as one byte`);
    out[i] = code;
  }
  return out;
}

/** The default limits with some of them replaced. */
export function limits(overrides: Partial<RequestLimits>): RequestLimits {
  return { ...DEFAULT_LIMITS, ...overrides };
}

export const HOST = "Host: example.com\r\n";

/** One malformed request and the status that must answer it. */
export interface BadCase {
  name: string;
  input: string;
  status: number;
  limits?: RequestLimits;
}

/** The head of a chunked POST; rows append chunk lines to it. */
export const chunkedHead = `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n`;
/** Tiny limits, so the limit rows stay short. */
export const small = limits({ maxRequestLine: 32, maxHeaderBytes: 64, maxHeaderCount: 3, maxBody: 10 });

/** Malformed requests, each with the status the server must answer. */
export const BAD_CASES: readonly BadCase[] = [
  // Line endings
  { name: "bare LF ending the request line", input: `GET / HTTP/1.1\n${HOST}\r\n`, status: 400 },
  { name: "bare LF ending a header field", input: `GET / HTTP/1.1\r\nHost: a\n\r\n`, status: 400 },
  { name: "bare LF as the empty line", input: `GET / HTTP/1.1\r\n${HOST}\n`, status: 400 },
  { name: "bare LF line endings throughout", input: `GET / HTTP/1.1\nHost: a\n\n`, status: 400 },
  { name: "bare CR ending the request line", input: `GET / HTTP/1.1\r${HOST}\r\n`, status: 400 },
  { name: "bare CR inside a header value", input: `GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n`, status: 400 },
  { name: "bare LF in a trailer", input: `${chunkedHead}0\r\nX-T: 1\n\r\n`, status: 400 },
  // Header fields
  { name: "obs-fold with a space", input: `GET / HTTP/1.1\r\n${HOST}X-A: b\r\n c\r\n\r\n`, status: 400 },
  { name: "obs-fold with a tab", input: `GET / HTTP/1.1\r\n${HOST}X-A: b\r\n\tc\r\n\r\n`, status: 400 },
  { name: "whitespace before the first header field", input: `GET / HTTP/1.1\r\n ${HOST}\r\n`, status: 400 },
  { name: "space before the colon", input: `GET / HTTP/1.1\r\nHost : a\r\n\r\n`, status: 400 },
  { name: "tab before the colon", input: `GET / HTTP/1.1\r\n${HOST}X-A\t: b\r\n\r\n`, status: 400 },
  { name: "NUL in a header value", input: `GET / HTTP/1.1\r\n${HOST}X-A: b\x00c\r\n\r\n`, status: 400 },
  { name: "0x01 in a header value", input: `GET / HTTP/1.1\r\n${HOST}X-A: \x01\r\n\r\n`, status: 400 },
  { name: "DEL in a header value", input: `GET / HTTP/1.1\r\n${HOST}X-A: b\x7f\r\n\r\n`, status: 400 },
  { name: "non-token byte in a header name", input: `GET / HTTP/1.1\r\n${HOST}X(A): b\r\n\r\n`, status: 400 },
  { name: "empty header name", input: `GET / HTTP/1.1\r\n${HOST}: b\r\n\r\n`, status: 400 },
  { name: "header line without a colon", input: `GET / HTTP/1.1\r\n${HOST}X-A\r\n\r\n`, status: 400 },
  // Request line
  { name: "non-token method", input: `G@T / HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "empty method", input: ` / HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "tab after the method", input: `GET\t/ HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "two spaces after the method", input: `GET  / HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "two spaces before the version", input: `GET /  HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "space after the version", input: `GET / HTTP/1.1 \r\n${HOST}\r\n`, status: 400 },
  { name: "missing version", input: `GET /\r\n${HOST}\r\n`, status: 400 },
  { name: "method alone", input: `GET\r\n${HOST}\r\n`, status: 400 },
  { name: "HTTP/2.0", input: `GET / HTTP/2.0\r\n${HOST}\r\n`, status: 505 },
  { name: "HTTP/3.0", input: `GET / HTTP/3.0\r\n${HOST}\r\n`, status: 505 },
  { name: "HTTP/0.9", input: `GET / HTTP/0.9\r\n${HOST}\r\n`, status: 505 },
  { name: "HTTP/1.1x", input: `GET / HTTP/1.1x\r\n${HOST}\r\n`, status: 400 },
  { name: "lower-case http/1.1", input: `GET / http/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "HTTP/1 without a minor version", input: `GET / HTTP/1\r\n${HOST}\r\n`, status: 400 },
  { name: "HTTP/11.1", input: `GET / HTTP/11.1\r\n${HOST}\r\n`, status: 400 },
  { name: "HTTP/a.1", input: `GET / HTTP/a.1\r\n${HOST}\r\n`, status: 400 },
  { name: "HTTP/1,1", input: `GET / HTTP/1,1\r\n${HOST}\r\n`, status: 400 },
  { name: "space inside the target", input: `GET /a b HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "raw byte 0x80 in the target", input: `GET /caf\x80 HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "raw byte 0xff in the target", input: `GET /\xff HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "control byte in the target", input: `GET /\x01 HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "target in neither origin nor absolute form", input: `GET example.com HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "* with GET", input: `GET * HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "* with POST", input: `POST * HTTP/1.1\r\n${HOST}\r\n`, status: 400 },
  { name: "CONNECT in authority form", input: `CONNECT example.com:443 HTTP/1.1\r\n${HOST}\r\n`, status: 501 },
  // Host
  { name: "HTTP/1.1 without Host", input: "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", status: 400 },
  { name: "HTTP/1.1 with two Host fields", input: `GET / HTTP/1.1\r\n${HOST}Host: other\r\n\r\n`, status: 400 },
  // Content-Length
  {
    name: "Content-Length with a plus sign",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: +5\r\n\r\nhello`,
    status: 400,
  },
  {
    name: "Content-Length with a minus sign",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: -5\r\n\r\n`,
    status: 400,
  },
  {
    name: "Content-Length with a space inside",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 1 0\r\n\r\n`,
    status: 400,
  },
  { name: "Content-Length in hex", input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 0x5\r\n\r\nhello`, status: 400 },
  { name: "Content-Length with hex digits", input: `POST / HTTP/1.1\r\n${HOST}Content-Length: a\r\n\r\n`, status: 400 },
  {
    name: "Content-Length with a fraction",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 5.0\r\n\r\n`,
    status: 400,
  },
  { name: "empty Content-Length", input: `POST / HTTP/1.1\r\n${HOST}Content-Length:\r\n\r\n`, status: 400 },
  {
    name: "Content-Length past 2^53",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 99999999999999999999\r\n\r\n`,
    status: 400,
  },
  {
    name: "two Content-Length fields with different values",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
    status: 400,
  },
  {
    name: "Content-Length list with different values",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 5, 6\r\n\r\nhello!`,
    status: 400,
  },
  // Transfer-Encoding
  {
    name: "Transfer-Encoding and Content-Length together",
    input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "Content-Length before Transfer-Encoding",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "Transfer-Encoding: gzip alone",
    input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: gzip\r\n\r\n`,
    status: 400,
  },
  {
    name: "Transfer-Encoding: chunked, gzip",
    input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked, gzip\r\n\r\n`,
    status: 400,
  },
  {
    name: "Transfer-Encoding: chunked, chunked",
    input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "two Transfer-Encoding: chunked fields",
    input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "Transfer-Encoding with a non-token coding",
    input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: g(zip), chunked\r\n\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "Transfer-Encoding: gzip, chunked",
    input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
    status: 501,
  },
  {
    name: "Transfer-Encoding: gzip then chunked in two fields",
    input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    status: 501,
  },
  {
    name: "unknown transfer coding before chunked",
    input: `POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: frobnicate, chunked\r\n\r\n0\r\n\r\n`,
    status: 501,
  },
  {
    name: "Transfer-Encoding in HTTP/1.0",
    input: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    status: 400,
  },
  // Chunked framing
  { name: "chunk size with a 0x prefix", input: `${chunkedHead}0x5\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk size with a plus sign", input: `${chunkedHead}+5\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk size with a minus sign", input: `${chunkedHead}-5\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk size with an underscore", input: `${chunkedHead}1_0\r\n0123456789abcdef\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk size followed by a space", input: `${chunkedHead}5 \r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk size preceded by a space", input: `${chunkedHead} 5\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "empty chunk size line", input: `${chunkedHead}\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk size of 16 hex digits", input: `${chunkedHead}1000000000000000\r\nhello\r\n`, status: 400 },
  { name: "chunk size of 20 hex digits", input: `${chunkedHead}ffffffffffffffffffff\r\n`, status: 400 },
  { name: "chunk data not followed by CRLF", input: `${chunkedHead}5\r\nhelloX\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk data followed by a bare LF", input: `${chunkedHead}5\r\nhello\n0\r\n\r\n`, status: 400 },
  { name: "chunk data longer than its size", input: `${chunkedHead}3\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "unbalanced quote in a chunk extension", input: `${chunkedHead}5;a="b\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk extension without a name", input: `${chunkedHead}5;\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk extension with an empty value", input: `${chunkedHead}5;a=\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk extension with trailing text", input: `${chunkedHead}5;a="b"c\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "NUL in a quoted chunk extension", input: `${chunkedHead}5;a="\x00"\r\nhello\r\n0\r\n\r\n`, status: 400 },
  { name: "obs-fold in a trailer", input: `${chunkedHead}0\r\nX-T: 1\r\n 2\r\n\r\n`, status: 400 },
  // Limits
  {
    name: "Content-Length over maxBody",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: 11\r\n\r\n`,
    status: 413,
    limits: small,
  },
  {
    name: "Content-Length over the default maxBody",
    input: `POST / HTTP/1.1\r\n${HOST}Content-Length: ${DEFAULT_LIMITS.maxBody + 1}\r\n\r\n`,
    status: 413,
  },
  {
    name: "chunks summing past maxBody",
    input: `${chunkedHead}6\r\nabcdef\r\n5\r\n`,
    status: 413,
    limits: limits({ maxBody: 10 }),
  },
  {
    name: "one chunk past maxBody, before its data arrives",
    input: `${chunkedHead}b\r\n`,
    status: 413,
    limits: limits({ maxBody: 10 }),
  },
  {
    name: "request line over maxRequestLine",
    input: `GET /${"a".repeat(40)} HTTP/1.1\r\n\r\n`,
    status: 414,
    limits: small,
  },
  {
    name: "request line one byte over maxRequestLine",
    input: `GET /${"a".repeat(33 - "GET / HTTP/1.1".length)} HTTP/1.1\r\nHost: a\r\n\r\n`,
    status: 414,
    limits: small,
  },
  {
    name: "unfinished request line one byte over maxRequestLine",
    input: `GET /${"a".repeat(33 - "GET /".length)}`,
    status: 414,
    limits: small,
  },
  {
    name: "unfinished request line over maxRequestLine",
    input: `GET /${"a".repeat(40)}`,
    status: 414,
    limits: small,
  },
  {
    name: "request line over the default maxRequestLine",
    input: `GET /${"a".repeat(DEFAULT_LIMITS.maxRequestLine)} HTTP/1.1\r\n${HOST}\r\n`,
    status: 414,
  },
  {
    name: "header section over maxHeaderBytes",
    input: `GET / HTTP/1.1\r\nHost: a\r\nX-Long: ${"v".repeat(60)}\r\n\r\n`,
    status: 431,
    limits: small,
  },
  {
    name: "header section one byte over maxHeaderBytes",
    input: `GET / HTTP/1.1\r\nHost: a\r\nX: ${"v".repeat(65 - "Host: a\r\nX: \r\n\r\n".length)}\r\n\r\n`,
    status: 431,
    limits: small,
  },
  {
    name: "unfinished header section over maxHeaderBytes",
    input: `GET / HTTP/1.1\r\nHost: a\r\nX-Long: ${"v".repeat(60)}`,
    status: 431,
    limits: small,
  },
  {
    name: "header section over the default maxHeaderBytes",
    input: `GET / HTTP/1.1\r\n${HOST}X-Long: ${"v".repeat(DEFAULT_LIMITS.maxHeaderBytes)}\r\n\r\n`,
    status: 431,
  },
  {
    name: "more fields than maxHeaderCount",
    input: `GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n`,
    status: 431,
    limits: small,
  },
  {
    name: "more fields than the default maxHeaderCount",
    input: `GET / HTTP/1.1\r\n${HOST}${"X: 1\r\n".repeat(DEFAULT_LIMITS.maxHeaderCount)}\r\n`,
    status: 431,
  },
  {
    name: "more trailer fields than maxHeaderCount",
    input: `${chunkedHead}0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n`,
    status: 431,
    limits: small,
  },
  // Host, for any version
  { name: "two Host fields in HTTP/1.0", input: "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", status: 400 },
  { name: "Host with a space and a slash", input: "GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", status: 400 },
  { name: "Host with a path", input: "GET / HTTP/1.1\r\nHost: example.com/x\r\n\r\n", status: 400 },
  { name: "Host with a non-numeric port", input: "GET / HTTP/1.1\r\nHost: example.com:http\r\n\r\n", status: 400 },
  // Chunk lines
  {
    name: "escaped NUL in a quoted chunk extension",
    input: `${chunkedHead}1;a="\\\x00"\r\nx\r\n0\r\n\r\n`,
    status: 400,
  },
  {
    name: "chunk line longer than maxRequestLine",
    input: `${chunkedHead}1;a=${"b".repeat(40)}\r\nx\r\n0\r\n\r\n`,
    status: 400,
    limits: small,
  },
  // Expect
  { name: "Expect: something-else", input: `GET / HTTP/1.1\r\n${HOST}Expect: something-else\r\n\r\n`, status: 417 },
  {
    name: "Expect: 100-continue with another expectation",
    input: `POST / HTTP/1.1\r\n${HOST}Expect: 100-continue, x=1\r\nContent-Length: 1\r\n\r\n`,
    status: 417,
  },
];
