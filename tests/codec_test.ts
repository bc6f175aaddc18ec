import assert from "node:assert/strict";
import { HANDLER_CODEC } from "../exchange/mod.ts";
import type { HandlerJob, HandlerResult } from "../exchange/mod.ts";

function roundTripJob(job: HandlerJob): HandlerJob {
  const bytes = new Uint8Array(HANDLER_CODEC.jobSize(job));
  HANDLER_CODEC.writeJob(job, bytes);
  return HANDLER_CODEC.readJob(bytes);
}

function roundTripResult(result: HandlerResult): HandlerResult {
  const bytes = new Uint8Array(HANDLER_CODEC.resultSize(result));
  HANDLER_CODEC.writeResult(result, bytes);
  return HANDLER_CODEC.readResult(bytes);
}

Deno.test("HANDLER_CODEC carries a job's bytes, close and TLS flags and client address, IPv4 or IPv6, any port", () => {
  const bytes = new TextEncoder().encode("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz");
  for (
    const remote of [
      { hostname: "127.0.0.1", port: 1 },
      { hostname: "fe80::1ff:fe23:4567:890a", port: 65535 },
      { hostname: "", port: 0 },
    ]
  ) {
    for (const close of [true, false]) {
      for (const secure of [true, false]) {
        assert.deepEqual(roundTripJob({ bytes, close, remote, secure }), { bytes, close, remote, secure });
      }
    }
  }
});

Deno.test("HANDLER_CODEC carries a result's status, worker, close flag, bytes and file part", () => {
  const bytes = new TextEncoder().encode("HTTP/1.1 206 Partial Content\r\n\r\n");
  const plain: HandlerResult = { bytes, status: 404, workerId: 1023, close: false };
  assert.deepEqual(roundTripResult(plain), plain);
  const fromMain: HandlerResult = { bytes: new Uint8Array(0), status: 503, workerId: undefined, close: true };
  assert.deepEqual(roundTripResult(fromMain), fromMain);
  const file = { path: "/srv/ünïcödé/a b.bin", start: 2 ** 40 + 5, length: 2 ** 33 };
  const withFile: HandlerResult = { bytes, status: 206, workerId: 0, close: false, file };
  assert.deepEqual(roundTripResult(withFile), withFile);
});
