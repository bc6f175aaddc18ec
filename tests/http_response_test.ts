import assert from "node:assert/strict";
import { serializeResponse } from "../http/mod.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("serializeResponse writes the head, then the body, with its length", () => {
  const text = decode(serializeResponse({ status: 200, headers: [["X-A", "b"]], body: new Uint8Array([104, 105]) }));
  assert.match(text, /^HTTP\/1\.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\nDate: .+ GMT\r\nServer: [^\r]+\r\n\r\nhi$/);
});

Deno.test("serializeResponse writes a header value up to U+00FF one byte per character, as Latin-1", () => {
  const body = new Uint8Array([0, 255, 1]);
  const bytes = serializeResponse({ status: 200, headers: [["X-Name", "Zoë café"]], body });
  const latin1 = new TextDecoder("latin1").decode(bytes);
  assert.ok(latin1.includes("X-Name: Zoë café\r\n"), latin1);
  // ë is one byte, 0xEB, not UTF-8's two.
  const at = latin1.indexOf("Zo") + 2;
  assert.equal(bytes[at], 0xeb);
  assert.deepEqual(bytes.subarray(bytes.length - 3), body);
});

Deno.test("serializeResponse falls back to UTF-8 for a head with a character past U+00FF, body whole", () => {
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
