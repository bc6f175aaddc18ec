/**
 * Static files under a root folder, for GET and HEAD.
 *
 * Theory of operation: the request path is percent-decoded segment by
 * segment and normalised; anything malformed (bad escapes, invalid or
 * overlong UTF-8, NUL, backslashes, encoded slashes) or climbing above the
 * root is refused with 400 before the file system is touched. The
 * normalised path is then resolved with `realPath`, so a symlink counts
 * where it leads, and must still lie inside the root's own real path. Small
 * files travel back inside the response; larger ones are named in it and
 * streamed by the main thread, so a slow download never holds a worker.
 *
 * @module
 */
import { extname, join, sep } from "node:path";
// @ts-types="npm:@types/mime-types@^2.1.4"
import mime from "npm:mime-types@2.1.35";
// @ts-types="npm:@types/range-parser@^1.2.7"
import parseRange from "npm:range-parser@1.3.0";
import { errorParts, targetPath } from "../http/mod.ts";
import type { RouteResponse } from "./routes.ts";

/** How the static root is served; each default is in the server's `DEFAULTS`. */
export interface StaticOptions {
  /** The root's real path (symlinks resolved). */
  root: string;
  /** Serve files and folders whose name starts with a dot. */
  dotfiles: boolean;
  /** List a folder that has no `index.html`. */
  dirListing: boolean;
  /** The `Cache-Control` value sent with files. */
  cacheControl: string;
}

/** A static answer: status, headers, and the body as bytes or as a part of a file. */
export type StaticResponse = RouteResponse;

/** What the static server needs of a request. */
export interface StaticRequest {
  /** The request method. */
  method: string;
  /** The request target, with any query. */
  target: string;
  /** Header fields, in order. */
  headers: Array<[string, string]>;
}

// Files up to this size are read by the worker and sent with the response;
// larger ones are streamed from disk by the main thread.
const INLINE_FILE_BYTES = 64 * 1024;

// Precompressed variants, best first, with the file suffix each lives under.
const ENCODINGS: ReadonlyArray<[coding: string, suffix: string]> = [["br", ".br"], ["gzip", ".gz"]];

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

function plain(status: number, extra: Array<[string, string]> = []): StaticResponse {
  return errorParts(status, extra);
}

function header(request: StaticRequest, name: string): string | undefined {
  return request.headers.find(([n]) => n === name)?.[1];
}

/**
 * Decodes and normalises a request path into safe segments, or answers why not.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePath } from "./static.ts";
 * assert.deepEqual(decodePath("/a/./b/../c%20d.txt"), { segments: ["a", "c d.txt"], directory: false });
 * assert.equal(decodePath("/../etc/passwd"), 400);
 * assert.equal(decodePath("/a%2fb"), 400);
 * ```
 */
export function decodePath(path: string): { segments: string[]; directory: boolean } | 400 {
  if (path.charCodeAt(0) !== 0x2f || path.includes("\\")) return 400;
  const segments: string[] = [];
  const raw = path.slice(1).split("/");
  for (const part of raw) {
    // An encoded slash or backslash would change which folder a name belongs to.
    if (/%(2f|5c)/i.test(part)) return 400;
    let name: string;
    try {
      // Throws on bad escapes and on invalid or overlong UTF-8.
      name = decodeURIComponent(part);
    } catch {
      return 400;
    }
    if (name.includes("\0") || name.includes("\\")) return 400;
    if (name === "" || name === ".") continue;
    if (name === "..") {
      if (segments.length === 0) return 400;
      segments.pop();
      continue;
    }
    segments.push(name);
  }
  const last = raw[raw.length - 1];
  return { segments, directory: last === "" || last === "." || last === ".." };
}

function inside(root: string, real: string): boolean {
  return real === root || real.startsWith(root.endsWith(sep) ? root : root + sep);
}

async function realInside(root: string, path: string): Promise<string | undefined> {
  try {
    const real = await Deno.realPath(path);
    return inside(root, real) ? real : undefined;
  } catch {
    return undefined;
  }
}

function etagOf(info: Deno.FileInfo, suffix = ""): string {
  return `"${info.size.toString(16)}-${(info.mtime?.getTime() ?? 0).toString(16)}${suffix}"`;
}

// RFC 9110 section 13.1.2: If-None-Match uses weak comparison.
function noneMatch(value: string, etag: string): boolean {
  if (value.trim() === "*") return true;
  const bare = etag.replace(/^W\//, "");
  return value.split(",").some((tag) => tag.trim().replace(/^W\//, "") === bare);
}

// The client's weight (q-value) for a content coding; 0 when it is not acceptable.
function codingWeight(value: string | undefined, coding: string): number {
  if (!value) return 0;
  let wildcard = 0;
  for (const item of value.split(",")) {
    const [name, ...params] = item.trim().toLowerCase().split(";").map((p) => p.trim());
    const q = params.find((p) => p.startsWith("q="));
    const weight = q === undefined ? 1 : (Number(q.slice(2)) || 0);
    // A coding named with q=0 is refused even if `*` would allow it (RFC 9110 section 12.5.3).
    if (name === coding) return weight;
    if (name === "*") wildcard = weight;
  }
  return wildcard;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function listing(dir: string, urlPath: string, options: StaticOptions): Promise<StaticResponse> {
  const entries: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!options.dotfiles && entry.name.startsWith(".")) continue;
    entries.push(entry.isDirectory ? `${entry.name}/` : entry.name);
  }
  entries.sort();
  const title = escapeHtml(urlPath);
  const items = entries.map((name) => {
    const href = encodeURIComponent(name.replace(/\/$/, "")) + (name.endsWith("/") ? "/" : "");
    return `<li><a href="${escapeHtml(href)}">${escapeHtml(name)}</a></li>`;
  });
  const html =
    `<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Index of ${title}</title></head>\n` +
    `<body><h1>Index of ${title}</h1><ul>\n${items.join("\n")}\n</ul></body>\n</html>\n`;
  return {
    status: 200,
    headers: [["Content-Type", "text/html; charset=utf-8"], ["X-Content-Type-Options", "nosniff"]],
    body: encoder.encode(html),
  };
}

async function readPart(path: string, start: number, length: number): Promise<Uint8Array> {
  const file = await Deno.open(path, { read: true });
  try {
    await file.seek(start, Deno.SeekMode.Start);
    const out = new Uint8Array(length);
    let offset = 0;
    while (offset < length) {
      const n = await file.read(out.subarray(offset));
      if (n === null) break;
      offset += n;
    }
    return offset === length ? out : out.subarray(0, offset);
  } finally {
    file.close();
  }
}

/**
 * Answers a request from the static root, or `undefined` when no file or
 * folder matches (the caller then answers 404).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serveStatic } from "./static.ts";
 * const root = await Deno.realPath(new URL("../static/", import.meta.url));
 * const options = { root, dotfiles: false, dirListing: false, cacheControl: "no-cache" };
 * const response = await serveStatic({ method: "GET", target: "/hello.html", headers: [] }, options);
 * assert.equal(response?.status, 200);
 * assert.equal((await serveStatic({ method: "GET", target: "/%2e%2e/x", headers: [] }, options))?.status, 400);
 * ```
 */
export async function serveStatic(
  request: StaticRequest,
  options: StaticOptions,
): Promise<StaticResponse | undefined> {
  const path = targetPath(request.target);
  const decoded = decodePath(path);
  if (decoded === 400) return plain(400);
  if (!options.dotfiles && decoded.segments.some((s) => s.startsWith("."))) return undefined;

  let real = await realInside(options.root, join(options.root, ...decoded.segments));
  if (real === undefined) return undefined;
  let info = await Deno.stat(real);
  // A file named with a trailing slash is not a folder.
  if (decoded.directory && !info.isDirectory) return undefined;
  if (request.method !== "GET" && request.method !== "HEAD") return plain(405, [["Allow", "GET, HEAD"]]);

  if (info.isDirectory) {
    if (!decoded.directory) {
      // Built from the normalised segments, so `//host` can never become a redirect to another host.
      const query = request.target.includes("?") ? request.target.slice(request.target.indexOf("?")) : "";
      const location = `/${decoded.segments.map(encodeURIComponent).join("/")}/`.replace(/^\/\/$/, "/");
      return { status: 301, headers: [["Location", location + query]], body: EMPTY };
    }
    const index = await realInside(options.root, join(real, "index.html"));
    const indexInfo = index === undefined ? undefined : await Deno.stat(index);
    if (index === undefined || !indexInfo?.isFile) {
      return options.dirListing ? await listing(real, path, options) : undefined;
    }
    real = index;
    info = indexInfo;
  }
  if (!info.isFile) return undefined;

  const contentType = mime.contentType(extname(real)) || "application/octet-stream";
  const headers: Array<[string, string]> = [["Content-Type", contentType], ["X-Content-Type-Options", "nosniff"]];

  // A precompressed sibling, when the client accepts its coding.
  let encoding: string | undefined;
  let hasVariants = false;
  const acceptEncoding = header(request, "accept-encoding");
  let bestWeight = 0;
  let chosen: [path: string, info: Deno.FileInfo] | undefined;
  for (const [coding, suffix] of ENCODINGS) {
    const variant = await realInside(options.root, real + suffix);
    const variantInfo = variant === undefined ? undefined : await Deno.stat(variant);
    if (!variantInfo?.isFile) continue;
    hasVariants = true;
    // The client's highest weight wins; on a tie, the smaller coding (earlier in ENCODINGS).
    const weight = codingWeight(acceptEncoding, coding);
    if (weight > bestWeight) {
      bestWeight = weight;
      encoding = coding;
      chosen = [variant!, variantInfo];
    }
  }
  if (chosen) [real, info] = chosen;
  if (hasVariants) headers.push(["Vary", "Accept-Encoding"]);
  if (encoding) headers.push(["Content-Encoding", encoding]);

  const etag = etagOf(info, encoding ? `-${encoding}` : "");
  const lastModified = info.mtime ? info.mtime.toUTCString() : undefined;
  const validators: Array<[string, string]> = [["ETag", etag], ["Cache-Control", options.cacheControl]];
  if (lastModified) validators.push(["Last-Modified", lastModified]);
  headers.push(...validators, ["Accept-Ranges", "bytes"]);

  const ifNoneMatch = header(request, "if-none-match");
  const ifModifiedSince = header(request, "if-modified-since");
  if (ifNoneMatch !== undefined ? noneMatch(ifNoneMatch, etag) : notModifiedSince(ifModifiedSince, info.mtime)) {
    return {
      status: 304,
      headers: headers.filter(([n]) => n !== "Content-Type" && n !== "Accept-Ranges"),
      body: EMPTY,
    };
  }

  let start = 0;
  let length = info.size;
  let status = 200;
  const range = header(request, "range");
  if (range !== undefined && ifRangeHolds(header(request, "if-range"), etag, lastModified)) {
    // A suffix longer than the file means the whole file (RFC 9110 section 14.1.2);
    // range-parser would call it unsatisfiable.
    const clamped = range.replace(/(=|,)\s*-(\d+)/g, (all, sep, n) => Number(n) > info.size ? `${sep}0-` : all);
    const ranges = parseRange(info.size, clamped, { combine: true });
    if (ranges === -1) {
      const variantHeaders = headers.filter(([name]) => name === "Vary" || name === "Content-Encoding");
      return plain(416, [["Content-Range", `bytes */${info.size}`], ...variantHeaders]);
    }
    // Several ranges are answered with the whole file (RFC 9110 allows ignoring Range).
    if (ranges !== -2 && ranges.type === "bytes" && ranges.length === 1) {
      status = 206;
      start = ranges[0].start;
      length = ranges[0].end - ranges[0].start + 1;
      headers.push(["Content-Range", `bytes ${start}-${ranges[0].end}/${info.size}`]);
    }
  }
  if (request.method === "HEAD" || length > INLINE_FILE_BYTES) {
    return { status, headers, body: EMPTY, file: { path: real, start, length } };
  }
  return { status, headers, body: await readPart(real, start, length) };
}

function notModifiedSince(value: string | undefined, mtime: Date | null): boolean {
  if (value === undefined || mtime === null) return false;
  const since = Date.parse(value);
  return !Number.isNaN(since) && Math.floor(mtime.getTime() / 1000) * 1000 <= since;
}

// RFC 9110 section 13.1.5: a Range applies only if If-Range names the current representation.
function ifRangeHolds(value: string | undefined, etag: string, lastModified: string | undefined): boolean {
  if (value === undefined) return true;
  const trimmed = value.trim();
  if (trimmed.startsWith('"') || trimmed.startsWith("W/")) return trimmed === etag;
  return lastModified !== undefined && trimmed === lastModified;
}
