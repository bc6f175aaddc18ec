import assert from "node:assert/strict";
import { serializeResponse } from "../http/mod.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("serializeResponse writes the head, then the body, with its length", () => {
  const text = decode(serializeResponse({ status: 200, headers: [["X-A", "b"]], body: new Uint8Array([104, 105]) }));
  assert.match(text, /^HTTP\/1\.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\nDate: .+ GMT\r\nServer: [^\r]+\r\n\r\nhi$/);
});

Deno.test("serializeResponse encodes a header value beyond ASCII as UTF-8 and keeps the body whole", () => {
  const body = new Uint8Array([0, 255, 1]);
  const bytes = serializeResponse({ status: 200, headers: [["X-Name", "Zoë ☃"]], body });
  assert.ok(decode(bytes).includes("X-Name: Zoë ☃\r\n"));
  assert.deepEqual(bytes.subarray(bytes.length - 3), body);
});

Deno.test("serializeResponse leaves out the body of a HEAD answer but states its length", () => {
  const text = decode(serializeResponse({ status: 200, body: new Uint8Array(5), omitBody: true }));
  assert.ok(text.includes("Content-Length: 5\r\n"));
  assert.ok(text.endsWith("\r\n\r\n"));
});
