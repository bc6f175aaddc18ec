// An independent judge of request bytes, for the fuzz test: written from RFC 9112 and the README's
// table of answers, sharing no code with http/. It is deliberately narrow: it calls a request
// `valid` only when every part of it is plainly within the grammar, `invalid` only for flaws no
// reading of the RFC allows, and `unsure` for everything in between (where the server's own
// policy decides), so that where it is sure, the server must agree with it.

/** What the first request in some bytes is, as far as this judge can be sure. */
export type Verdict =
  /** A whole, plainly valid request: the server must answer it as a request, not with an error. */
  | { kind: "valid" }
  /** A flaw in the head that no valid request has: the server must answer with an error and close. */
  | { kind: "invalid"; why: string }
  /** Plainly valid so far, but more bytes are needed. */
  | { kind: "incomplete" }
  /** Outside what this judge decides. */
  | { kind: "unsure"; why: string };

/** The statuses the server answers bad input with (see the README's table). */
export const ERROR_STATUSES: ReadonlySet<number> = new Set([400, 408, 413, 414, 417, 431, 501, 505]);

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
// Methods any origin server understands with an origin-form target; others are left unsure.
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]);
// origin-form: absolute-path [ "?" query ], with pct-encoded octets whole (RFC 9112 section 3.2.1).
const REQUEST_LINE = new RegExp(
  `^(${TOKEN}) (/(?:[A-Za-z0-9\\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*) HTTP/1\\.([01])\r\n`,
);
// field-line = field-name ":" OWS field-value OWS, a value of field-vchars with SP/HTAB inside.
const FIELD_LINE = new RegExp(
  `^(${TOKEN}):[ \t]*((?:[\x21-\x7e\x80-\xff](?:[\x21-\x7e\x80-\xff \t]*[\x21-\x7e\x80-\xff])?)?)[ \t]*$`,
);
const HOST = /^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$/;
// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 section 5.6.4).
const QUOTED = /"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"/.source;
const CHUNK_LINE = new RegExp(`^([0-9A-Fa-f]{1,6})((?:;${TOKEN}(?:=(?:${TOKEN}|${QUOTED}))?)*)\r\n`);
// Small enough that no limit of the server's defaults applies.
const MAX_BODY = 64 * 1024;

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/** Judges the first request in `bytes`. */
export function judge(bytes: Uint8Array): Verdict {
  const text = latin1(bytes);
  const headEnd = text.indexOf("\r\n\r\n");
  const head = headEnd === -1 ? text : text.slice(0, headEnd);

  // Flaws that no valid head holds (RFC 9112 sections 2.2, 3 and 5): control bytes other than HTAB,
  // and CR or LF anywhere but together as a line end. A CR that ends the bytes may yet be one.
  // deno-lint-ignore no-control-regex -- control bytes are what this looks for
  const control = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.exec(head);
  if (control) return { kind: "invalid", why: `control byte 0x${control[0].charCodeAt(0).toString(16)} in the head` };
  const bareLf = /(?:^|[^\r])\n/.exec(head);
  if (bareLf) return { kind: "invalid", why: "bare LF in the head" };
  const bareCr = /\r(?!\n)/.exec(head);
  if (bareCr && bareCr.index !== text.length - 1) return { kind: "invalid", why: "bare CR in the head" };

  const line = REQUEST_LINE.exec(text);
  if (!line) {
    return headEnd === -1 && !text.includes("\r\n") ? { kind: "incomplete" } : { kind: "unsure", why: "request line" };
  }
  const [requestLine, method, target, minor] = line;
  if (!METHODS.has(method)) return { kind: "unsure", why: `method ${method}` };
  // The README's static-file rules refuse some paths that frame well (escapes that are not UTF-8,
  // NUL, encoded slashes, dot segments): those are the server's policy, not the grammar's.
  if (!plainPath(target.split("?")[0])) return { kind: "unsure", why: "a path the static rules judge" };
  if (headEnd === -1) return { kind: "incomplete" };

  const fields = new Map<string, string[]>();
  const fieldText = text.slice(requestLine.length, headEnd);
  for (const fieldLine of fieldText === "" ? [] : fieldText.split("\r\n")) {
    const field = FIELD_LINE.exec(fieldLine);
    if (!field) return { kind: "unsure", why: `field line ${JSON.stringify(fieldLine)}` };
    const name = field[1].toLowerCase();
    fields.set(name, [...fields.get(name) ?? [], field[2]]);
  }
  const hosts = fields.get("host") ?? [];
  if (minor === "1" ? hosts.length !== 1 : hosts.length > 1) return { kind: "unsure", why: "Host count" };
  if (hosts.length === 1 && !HOST.test(hosts[0])) return { kind: "unsure", why: "Host value" };
  const expect = fields.get("expect");
  if (expect && (expect.length > 1 || expect[0].toLowerCase() !== "100-continue")) {
    return { kind: "unsure", why: "Expect" };
  }
  const lengths = fields.get("content-length");
  const codings = fields.get("transfer-encoding");
  if (lengths && codings) return { kind: "invalid", why: "both Content-Length and Transfer-Encoding" };

  const body = text.slice(headEnd + 4);
  if (codings) {
    // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing.
    if (minor === "0") return { kind: "unsure", why: "Transfer-Encoding in HTTP/1.0" };
    if (codings.length > 1 || codings[0].toLowerCase() !== "chunked") return { kind: "unsure", why: "coding" };
    return judgeChunked(body);
  }
  if (lengths) {
    if (lengths.length > 1 || !/^[0-9]{1,6}$/.test(lengths[0])) return { kind: "unsure", why: "Content-Length" };
    const length = Number(lengths[0]);
    if (length > MAX_BODY) return { kind: "unsure", why: "a large body" };
    return body.length >= length ? { kind: "valid" } : { kind: "incomplete" };
  }
  return { kind: "valid" };
}

function plainPath(path: string): boolean {
  if (/%(?:00|2f|5c)/i.test(path)) return false;
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return false; // escapes that are not UTF-8
  }
  return !decoded.split("/").some((segment) => segment === "." || segment === "..");
}

// chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 section 7.1).
function judgeChunked(body: string): Verdict {
  let at = 0;
  let total = 0;
  for (;;) {
    const rest = body.slice(at);
    const chunk = CHUNK_LINE.exec(rest);
    if (!chunk) {
      // A size line still arriving, or one outside this judge's narrow grammar.
      return /^[0-9A-Fa-f]{0,6}$/.test(rest) ? { kind: "incomplete" } : { kind: "unsure", why: "chunk line" };
    }
    const size = parseInt(chunk[1], 16);
    total += size;
    if (total > MAX_BODY) return { kind: "unsure", why: "a large body" };
    at += chunk[0].length;
    if (size === 0) break;
    if (body.length < at + size + 2) return { kind: "incomplete" };
    if (body.slice(at + size, at + size + 2) !== "\r\n") return { kind: "unsure", why: "chunk data end" };
    at += size + 2;
  }
  // Trailer fields, then the empty line.
  for (;;) {
    const end = body.indexOf("\r\n", at);
    if (end === -1) return { kind: "incomplete" };
    if (end === at) return { kind: "valid" };
    if (!FIELD_LINE.exec(body.slice(at, end))) return { kind: "unsure", why: "trailer" };
    at = end + 2;
  }
}
