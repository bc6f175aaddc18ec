/**
 * The server's {@linkcode PoolCodec}: how a request travels to a worker and
 * its response comes back, as bytes in the pool's shared memory. Both the
 * server (main thread) and the handler workers use it.
 *
 * A job is a small header (close flag, client port and address) followed by
 * the request's bytes; a result is a header (status, flags, worker id, and a
 * file part when the main thread sends one) followed by the response bytes.
 *
 * @module
 */
import type { PoolCodec } from "../pool/mod.ts";
import type { HandlerJob, HandlerResult } from "./types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Job header: flags (1), unused (1), port (2), address length (2).
const JOB_HEAD = 6;
// Result header: status (2), flags (1), unused (1), worker id (2), path length (2);
// with a file, then its start and length (8 each).
const RESULT_HEAD = 8;
const FILE_HEAD = 16;
const CLOSE = 1;
const HAS_WORKER = 2;
const HAS_FILE = 4;
const UPGRADE_REFUSED = 8;
// Job flag: the request came over TLS.
const SECURE = 2;

// Little-endian 16-bit fields, by hand: cheaper than a DataView per message.
function setU16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = value >> 8;
}

function getU16(bytes: Uint8Array, at: number): number {
  return bytes[at] | (bytes[at + 1] << 8);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Encodes {@linkcode HandlerJob}s and {@linkcode HandlerResult}s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HANDLER_CODEC } from "./codec.ts";
 * const job = { bytes: new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"), close: true, remote: { hostname: "::1", port: 8 }, secure: false };
 * const bytes = new Uint8Array(HANDLER_CODEC.jobSize(job));
 * HANDLER_CODEC.writeJob(job, bytes);
 * assert.deepEqual(HANDLER_CODEC.readJob(bytes), job);
 * ```
 */
export const HANDLER_CODEC: PoolCodec<HandlerJob, HandlerResult> = {
  jobSize(job) {
    // An address is ASCII: one byte per character.
    return JOB_HEAD + job.remote.hostname.length + job.bytes.length;
  },
  writeJob(job, into) {
    const host = job.remote.hostname;
    into[0] = (job.close ? CLOSE : 0) | (job.secure ? SECURE : 0);
    setU16(into, 2, job.remote.port);
    setU16(into, 4, host.length);
    encoder.encodeInto(host, into.subarray(JOB_HEAD, JOB_HEAD + host.length));
    into.set(job.bytes, JOB_HEAD + host.length);
  },
  readJob(bytes) {
    const hostLength = getU16(bytes, 4);
    return {
      close: (bytes[0] & CLOSE) !== 0,
      secure: (bytes[0] & SECURE) !== 0,
      remote: {
        hostname: decoder.decode(bytes.subarray(JOB_HEAD, JOB_HEAD + hostLength)),
        port: getU16(bytes, 2),
      },
      bytes: bytes.subarray(JOB_HEAD + hostLength),
    };
  },
  resultSize(result) {
    const pathLength = result.file ? encoder.encode(result.file.path).length : 0;
    if (pathLength > 0xffff) throw new RangeError(`Cannot encode result: a file path of ${pathLength} bytes`);
    const file = result.file ? FILE_HEAD + pathLength : 0;
    return RESULT_HEAD + file + result.bytes.length;
  },
  writeResult(result, into) {
    const flags = (result.close ? CLOSE : 0) | (result.workerId === undefined ? 0 : HAS_WORKER) |
      (result.file ? HAS_FILE : 0) | (result.upgradeRefused ? UPGRADE_REFUSED : 0);
    setU16(into, 0, result.status);
    into[2] = flags;
    setU16(into, 4, result.workerId ?? 0);
    let at = RESULT_HEAD;
    if (result.file) {
      const data = view(into);
      const path = encoder.encode(result.file.path);
      setU16(into, 6, path.length);
      data.setFloat64(at, result.file.start, true);
      data.setFloat64(at + 8, result.file.length, true);
      into.set(path, at + FILE_HEAD);
      at += FILE_HEAD + path.length;
    }
    into.set(result.bytes, at);
  },
  readResult(bytes) {
    const flags = bytes[2];
    const result: HandlerResult = {
      status: getU16(bytes, 0),
      close: (flags & CLOSE) !== 0,
      workerId: flags & HAS_WORKER ? getU16(bytes, 4) : undefined,
      bytes: bytes,
    };
    if (flags & UPGRADE_REFUSED) result.upgradeRefused = true;
    let at = RESULT_HEAD;
    if (flags & HAS_FILE) {
      const data = view(bytes);
      const pathLength = getU16(bytes, 6);
      result.file = {
        start: data.getFloat64(at, true),
        length: data.getFloat64(at + 8, true),
        path: decoder.decode(bytes.subarray(at + FILE_HEAD, at + FILE_HEAD + pathLength)),
      };
      at += FILE_HEAD + pathLength;
    }
    result.bytes = bytes.subarray(at);
    return result;
  },
};
