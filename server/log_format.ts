/**
 * The request log's line formats: `text` (this server's own), `combined`
 * (the nginx/Apache combined format, which log tools read), and `json` (one
 * object per line).
 *
 * @module
 */
import type { RequestLogEntry } from "./connection_state.ts";
import type { LogFormat } from "./options.ts";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

const two = (n: number) => String(n).padStart(2, "0");

// The combined format's time, `[10/Oct/2000:13:55:36 +0000]`, in UTC.
function clfTime(date: Date): string {
  return `[${two(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:` +
    `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000]`;
}

// A value inside the combined format's double quotes: quotes, backslashes and bytes outside
// printable ASCII escaped as nginx does (`\x22`), so one line stays one line and parses.
function quoted(value: string | undefined): string {
  if (value === undefined || value === "") return "-";
  return value.replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? "?" : `\\x${code.toString(16).toUpperCase().padStart(2, "0")}`;
  });
}

/**
 * One request's log line in `format`; `date` is when the response ended.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatLogLine } from "./log_format.ts";
 * const entry = { method: "GET", target: "/", version: "HTTP/1.1", status: 200, bytes: 10, ms: 1.234, workerId: 2, remote: "127.0.0.1" };
 * const date = new Date(Date.UTC(2026, 11, 2, 7, 5, 9));
 * assert.equal(formatLogLine(entry, "text", date), "GET / 200 10B 1.23ms worker 2");
 * assert.equal(
 *   formatLogLine({ ...entry, userAgent: "curl/8" }, "combined", date),
 *   '127.0.0.1 - - [02/Dec/2026:07:05:09 +0000] "GET / HTTP/1.1" 200 10 "-" "curl/8"',
 * );
 * assert.equal(JSON.parse(formatLogLine(entry, "json", date)).status, 200);
 * ```
 */
export function formatLogLine(entry: RequestLogEntry, format: LogFormat = "text", date: Date = new Date()): string {
  switch (format) {
    case "text": {
      const worker = entry.workerId === undefined ? "main" : `worker ${entry.workerId}`;
      const gone = entry.clientGone ? " (client gone)" : "";
      return `${entry.method} ${entry.target} ${entry.status} ${entry.bytes}B ${
        entry.ms.toFixed(2)
      }ms ${worker}${gone}`;
    }
    case "combined": {
      // A request that could not be read has no request line: "-" stands for it, as in nginx.
      const request = entry.method === "-" ? "-" : quoted(`${entry.method} ${entry.target} ${entry.version}`);
      return `${entry.remote || "-"} - - ${clfTime(date)} "${request}" ${entry.status} ${entry.bytes} ` +
        `"${quoted(entry.referer)}" "${quoted(entry.userAgent)}"`;
    }
    case "json":
      return JSON.stringify({
        time: date.toISOString(),
        client: entry.remote,
        method: entry.method,
        path: entry.target,
        status: entry.status,
        bytes: entry.bytes,
        duration_ms: Math.round(entry.ms * 1000) / 1000,
        worker: entry.workerId ?? null,
        ...(entry.clientGone ? { client_gone: true } : {}),
      });
  }
}
