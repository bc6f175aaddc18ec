// How an app's Response becomes bytes, decided from what the Response is: a body given whole
// goes out with Content-Length, a stream as it comes (chunked, or with the length it declares).
// No sockets and no timing: writeResponse is driven with a progress that records what it emits.
import assert from "node:assert/strict";
import {
  BodyLengthError,
  type ExchangeInfo,
  hasWholeBody,
  toRequest,
  trackResponseBodies,
  writeResponse,
} from "../handlers/fetch.ts";
import type { StreamPart } from "../exchange/mod.ts";
import type { JobProgress } from "../pool/run_jobs.ts";
import { parseRequest } from "../http/mod.ts";

trackResponseBodies();

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const GET: ExchangeInfo = { method: "GET", version: "HTTP/1.1", close: false, workerId: 0 };

/** A progress that records each part emitted and acknowledges at once. */
function recorder(): JobProgress & { parts: StreamPart[] } {
  const parts: StreamPart[] = [];
  return {
    parts,
    signal: new AbortController().signal,
    emit: (data: unknown) => {
      parts.push(data as StreamPart);
      return Promise.resolve();
    },
    flush: () => Promise.resolve(),
  };
}

/** The bytes a response becomes on the wire: the result alone, or the streamed head, pieces and end. */
async function wire(response: Response, exchange: ExchangeInfo = GET): Promise<string> {
  const progress = recorder();
  const result = await writeResponse(response, exchange, progress);
  const pieces = progress.parts.map((part) => part.kind === "head" ? part.result.bytes : part.bytes);
  return [...pieces, result.bytes].map((bytes) => decoder.decode(bytes)).join("");
}

function headOf(text: string): string {
  return text.slice(0, text.indexOf("\r\n\r\n"));
}

function bodyOf(text: string): string {
  return text.slice(text.indexOf("\r\n\r\n") + 4);
}

/** A stream that gives `pieces`, each after a turn of the event loop. */
function stream(...pieces: string[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async pull(controller) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      const next = pieces.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(encoder.encode(next));
    },
  });
}

Deno.test("a body given whole goes out with Content-Length, whatever kind it is", async () => {
  const form = new FormData();
  form.set("a", "1");
  const cases: Array<[string, Response]> = [
    ["string", new Response("héllo")],
    ["Uint8Array", new Response(encoder.encode("bytes"))],
    ["ArrayBuffer", new Response(encoder.encode("buffer").buffer)],
    ["Blob", new Response(new Blob(["bl", "ob"]))],
    ["URLSearchParams", new Response(new URLSearchParams({ q: "1" }))],
    ["FormData", new Response(form)],
    ["Response.json", Response.json({ ok: true })],
    ["a clone", new Response("cloned").clone()],
  ];
  for (const [kind, response] of cases) {
    const text = await wire(response);
    const body = encoder.encode(bodyOf(text));
    assert.match(headOf(text), new RegExp(`\r\nContent-Length: ${body.length}\r\n`), kind);
    assert.doesNotMatch(headOf(text), /Transfer-Encoding/i, kind);
    assert.ok(body.length > 0, kind);
  }
});

Deno.test("a stream goes out chunked to HTTP/1.1, even one whose pieces are all there at once", async () => {
  const ready = new Response("at once").body!; // a stream, whatever it holds
  for (const response of [new Response(stream("one", "two")), new Response(ready)]) {
    assert.ok(!hasWholeBody(response));
    const text = await wire(response);
    assert.match(headOf(text), /\r\nTransfer-Encoding: chunked/);
    assert.doesNotMatch(headOf(text), /Content-Length/i);
    assert.ok(bodyOf(text).endsWith("0\r\n\r\n"));
  }
});

Deno.test("a stream that declares its Content-Length goes out with it, its pieces unframed", async () => {
  const text = await wire(new Response(stream("one", "two"), { headers: { "content-length": "6" } }));
  assert.match(headOf(text), /\r\nContent-Length: 6\r\n/);
  assert.doesNotMatch(headOf(text), /Transfer-Encoding|Connection: close/i);
  assert.equal(bodyOf(text), "onetwo");
});

Deno.test("a stream that gives more or less than it declared fails with BodyLengthError", async () => {
  for (const [declared, given] of [[5, 6], [7, 6]]) {
    const response = new Response(stream("one", "two"), { headers: { "content-length": String(declared) } });
    await assert.rejects(writeResponse(response, GET, recorder()), (error: unknown) => {
      assert.ok(error instanceof BodyLengthError);
      assert.equal(error.declared, declared);
      assert.ok(given > declared ? error.given > declared : error.given === given);
      return true;
    });
  }
});

Deno.test("a stream to HTTP/1.0 goes out as it comes and closes the connection, unless it declares its length", async () => {
  const exchange: ExchangeInfo = { ...GET, version: "HTTP/1.0" };
  const open = await wire(new Response(stream("a", "b")), exchange);
  assert.match(headOf(open), /\r\nConnection: close/);
  assert.doesNotMatch(headOf(open), /Transfer-Encoding|Content-Length/i);
  assert.equal(bodyOf(open), "ab");
  const sized = await wire(new Response(stream("a", "b"), { headers: { "content-length": "2" } }), exchange);
  assert.match(headOf(sized), /\r\nContent-Length: 2\r\n/);
  assert.match(headOf(sized), /\r\nConnection: keep-alive/);
});

Deno.test("HEAD gets the length of a whole body, the declared length of a stream, or neither", async () => {
  const head: ExchangeInfo = { ...GET, method: "HEAD" };
  const whole = await wire(new Response("twelve bytes"), head);
  assert.match(headOf(whole), /\r\nContent-Length: 12\r\n/);
  assert.equal(bodyOf(whole), "");
  const declared = await wire(new Response(stream("x"), { headers: { "content-length": "1" } }), head);
  assert.match(headOf(declared), /\r\nContent-Length: 1\r\n/);
  assert.equal(bodyOf(declared), "");
  const unknown = await wire(new Response(stream("x")), head);
  assert.doesNotMatch(headOf(unknown), /Content-Length|Transfer-Encoding/i);
  assert.equal(bodyOf(unknown), "");
});

Deno.test("every Response is still instanceof Response, the runtime's own included", () => {
  assert.ok(new Response("x") instanceof Response);
  assert.ok(Response.error() instanceof Response);
  assert.ok(Response.redirect("http://example.com/") instanceof Response);
  assert.ok(!(new Request("http://x/") instanceof Response));
});

Deno.test("the request URL takes the connection's scheme and the Host header", () => {
  const parsed = parseRequest(encoder.encode("GET /p?q=1 HTTP/1.1\r\nHost: example.com:8443\r\n\r\n"));
  assert.equal(toRequest(parsed).url, "http://example.com:8443/p?q=1");
  assert.equal(toRequest(parsed, undefined, true).url, "https://example.com:8443/p?q=1");
  const absolute = parseRequest(encoder.encode("GET http://other.test/x HTTP/1.1\r\nHost: example.com\r\n\r\n"));
  assert.equal(toRequest(absolute, undefined, true).url, "http://other.test/x", "an absolute target names its own");
});
