// End to end: --app PATH loads a `deno serve`-shaped module (`export default { fetch(request, info) }`) in every worker
// instead of the built-in routes. The real server process, over raw sockets, so the wire format is visible.
import assert from "node:assert/strict";
import { AppError, setupWorker } from "../handlers/job.ts";
import { DEFAULT_LIMITS } from "../http/mod.ts";
import { PROJECT_ROOT, ServerProcess, spawnServer, startServer, STATIC_ROOT, taskArgs } from "./_server.ts";
import { FramingError, header, headerValues, openRaw, rawRequest, type RawResponse } from "./_chunked.ts";
import { rssKiB, sampleRss } from "./_proc.ts";
import { within } from "./_within.ts";

/** The fixture apps, relative to the server's working directory (the project root). */
const APPS = "tests/fixtures/apps/";

/** What tests/fixtures/apps/echo.ts answers at /echo. */
interface Echo {
  url: string;
  method: string;
  headers: Array<[string, string]>;
  body: string;
  bodyLength: number;
  remoteAddr: { hostname: string; port: number };
  workerId: unknown;
}

const encoder = new TextEncoder();

function parseEcho(response: RawResponse): Echo {
  assert.equal(response.status, 200, `GET /echo answered ${response.statusLine}: ${response.text}`);
  return JSON.parse(response.text) as Echo;
}

/** A body in chunked transfer coding, each part one chunk, sizes in bytes. */
function chunked(parts: string[]): string {
  return parts.map((part) => `${encoder.encode(part).length.toString(16)}\r\n${part}\r\n`).join("") + "0\r\n\r\n";
}

function assertNotChunked(response: RawResponse): void {
  assert.equal(header(response, "transfer-encoding"), undefined, "unexpected Transfer-Encoding");
}

Deno.test("--app with a deno-serve-shaped module, over real sockets", async (t) => {
  await using server = await startServer(["--workers", "3", "--app", `${APPS}echo.ts`]);
  const { port } = server;

  await t.step(
    "the Request has the full URL from Host, the method, and every header, repeated ones combined",
    async () => {
      const echo = parseEcho(
        await rawRequest(
          port,
          "DELETE /echo?a=1&b=two%20words HTTP/1.1\r\nHost: example.test:8080\r\nX-Multi: one\r\nX-Single: value\r\n" +
            "X-Multi: two\r\nUser-Agent: raw-test/1\r\nAccept: */*\r\n\r\n",
        ),
      );
      assert.equal(echo.url, "http://example.test:8080/echo?a=1&b=two%20words");
      assert.equal(echo.method, "DELETE");
      const headers = new Map(echo.headers);
      assert.equal(headers.get("host"), "example.test:8080");
      assert.equal(headers.get("x-multi"), "one, two");
      assert.equal(headers.get("x-single"), "value");
      assert.equal(headers.get("user-agent"), "raw-test/1");
      assert.equal(headers.get("accept"), "*/*");
      assert.equal(echo.body, "");
    },
  );

  await t.step("a Content-Length request body reaches the app whole", async () => {
    const body = "name=wörld&x=1";
    const length = encoder.encode(body).length;
    const echo = parseEcho(
      await rawRequest(
        port,
        `PATCH /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
          `Content-Length: ${length}\r\n\r\n${body}`,
      ),
    );
    assert.equal(echo.method, "PATCH");
    assert.equal(echo.url, "http://127.0.0.1/echo");
    assert.equal(echo.body, body);
    assert.equal(echo.bodyLength, length);
    assert.equal(new Map(echo.headers).get("content-type"), "application/x-www-form-urlencoded");
  });

  await t.step("a chunked request body reaches the app decoded", async () => {
    const parts = ["héllo", " ", "chunked wörld"];
    const echo = parseEcho(
      await rawRequest(
        port,
        `PUT /echo?via=chunks HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nTransfer-Encoding: chunked\r\n\r\n${
          chunked(parts)
        }`,
      ),
    );
    assert.equal(echo.method, "PUT");
    assert.equal(echo.url, `http://127.0.0.1:${port}/echo?via=chunks`);
    assert.equal(echo.body, parts.join(""));
    assert.equal(echo.bodyLength, encoder.encode(parts.join("")).length);
  });

  await t.step("a 300 kB request body arrives intact, with Content-Length and chunked", async () => {
    const body = Array.from({ length: 30_000 }, (_, i) => String(i % 10_000).padStart(9, "0") + "\n").join("");
    assert.equal(body.length, 300_000);
    const withLength = parseEcho(
      await rawRequest(port, `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
    );
    assert.equal(withLength.bodyLength, body.length);
    assert.ok(withLength.body === body, "the Content-Length body differs");
    const parts = Array.from({ length: 30 }, (_, i) => body.slice(i * 10_000, (i + 1) * 10_000));
    const withChunks = parseEcho(
      await rawRequest(port, `POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(parts)}`),
    );
    assert.equal(withChunks.bodyLength, body.length);
    assert.ok(withChunks.body === body, "the chunked body differs");
  });

  await t.step("info has the client's address and port, and the worker id as a number", async () => {
    using connection = await openRaw(port);
    await connection.send("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const response = await connection.reader.read();
    assert.ok(response, "no response");
    const echo = parseEcho(response);
    assert.equal(echo.remoteAddr.hostname, "127.0.0.1");
    assert.equal(typeof echo.remoteAddr.port, "number");
    assert.equal(echo.remoteAddr.port, connection.conn.localAddr.port, "remoteAddr.port is not the client's port");
    assert.equal(typeof echo.workerId, "number", `workerId is ${JSON.stringify(echo.workerId)}`);
    assert.ok(Number.isInteger(echo.workerId), `workerId is ${echo.workerId}`);
  });

  await t.step("the app is loaded in every worker: three blocking requests at once get three workers", async () => {
    const start = performance.now();
    const responses = await Promise.all(
      [1, 2, 3].map((i) => rawRequest(port, `GET /block?ms=700&n=${i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)),
    );
    const elapsed = performance.now() - start;
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200], responses.map((r) => r.text).join("\n"));
    const ids = responses.map((r) => (JSON.parse(r.text) as { workerId: unknown }).workerId);
    assert.equal(new Set(ids).size, 3, `worker ids ${JSON.stringify(ids)}`);
    assert.ok(elapsed < 1800, `three 700 ms blocking requests on three workers took ${elapsed.toFixed(0)} ms`);
  });

  await t.step("a custom status and reason make the status line; no reason gets the standard one", async () => {
    const custom = await rawRequest(port, "GET /custom-status HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(custom.statusLine, "HTTP/1.1 299 Custom");
    assert.equal(custom.text, "x");
    const created = await rawRequest(port, "GET /created HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(created.statusLine, "HTTP/1.1 201 Created");
    assert.equal(created.text, "made");
  });

  await t.step("every response header is written, and two Set-Cookie headers stay two header lines", async () => {
    const response = await rawRequest(port, "GET /headers HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(response.status, 200);
    assert.equal(header(response, "content-type"), "application/x-test");
    assert.equal(header(response, "x-alpha"), "one");
    assert.equal(header(response, "x-beta"), "two, three");
    assert.equal(header(response, "cache-control"), "no-store");
    assert.deepEqual(headerValues(response, "set-cookie"), ["a=1; Path=/", "b=2; HttpOnly"]);
    assert.equal(response.text, "with headers");
  });

  await t.step("a Uint8Array body is sent byte for byte with Content-Length", async () => {
    const response = await rawRequest(port, "GET /bytes HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(response.status, 200);
    assertNotChunked(response);
    assert.equal(header(response, "content-length"), "256");
    assert.deepEqual(response.body.bytes, Uint8Array.from({ length: 256 }, (_, i) => i));
  });

  await t.step("a string body is sent as UTF-8 with Content-Length and the Response's Content-Type", async () => {
    const response = await rawRequest(port, "GET /text HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(response.status, 200);
    assertNotChunked(response);
    assert.equal(header(response, "content-length"), String(encoder.encode("héllo wörld").length));
    assert.equal(header(response, "content-type"), "text/plain;charset=UTF-8");
    assert.equal(response.text, "héllo wörld");
  });

  await t.step(
    "a ReadableStream body goes out chunked to HTTP/1.1, its first chunk before the stream ends",
    async () => {
      using connection = await openRaw(port);
      // Warm up this path on the connection, and check the connection stays usable after a chunked answer.
      await connection.send("GET /stream?gap=0 HTTP/1.1\r\nHost: x\r\n\r\n");
      const warm = await connection.reader.read();
      assert.equal(warm?.text, "one\ntwo\nthree\n");

      const arrivals: Array<{ at: number; text: string }> = [];
      const decoder = new TextDecoder();
      const sent = performance.now();
      await connection.send("GET /stream?gap=500 HTTP/1.1\r\nHost: x\r\n\r\n");
      const response = await connection.reader.read({
        onData: (bytes) => arrivals.push({ at: performance.now() - sent, text: decoder.decode(bytes) }),
      });
      assert.ok(response, "no response");
      assert.equal(response.status, 200);
      assert.equal(header(response, "transfer-encoding"), "chunked");
      assert.equal(header(response, "content-length"), undefined, "Content-Length sent with a chunked body");
      assert.equal(header(response, "content-type"), "text/plain; charset=utf-8");
      assert.equal(response.body.framing, "chunked");
      assert.equal(response.text, "one\ntwo\nthree\n");
      const timeline = JSON.stringify(arrivals.map((a) => [Math.round(a.at), a.text]));
      assert.ok(arrivals[0].text.startsWith("one\n") && arrivals[0].at < 300, `first data late or wrong: ${timeline}`);
      const last = arrivals[arrivals.length - 1].at;
      assert.ok(last >= 900, `the 500 ms gaps were not kept, so the test proves nothing: ${timeline}`);
      assert.ok(last - arrivals[0].at >= 700, `the body arrived all at once: ${timeline}`);

      await connection.send("GET /text HTTP/1.1\r\nHost: x\r\n\r\n");
      const next = await connection.reader.read();
      assert.equal(next?.statusLine, "HTTP/1.1 200 OK");
      assert.equal(next?.text, "héllo wörld");
    },
  );

  await t.step("the same stream to HTTP/1.0 is sent without chunked coding, then the connection closes", async () => {
    using connection = await openRaw(port);
    await connection.send("GET /stream?gap=100 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    const response = await connection.reader.read();
    assert.ok(response, "no response");
    assert.equal(response.status, 200);
    assertNotChunked(response);
    assert.ok(["close", "length"].includes(response.body.framing), `framing ${response.body.framing}`);
    assert.equal(response.text, "one\ntwo\nthree\n");
    assert.ok(await connection.reader.waitClosed(), "the connection stayed open after the HTTP/1.0 answer");
  });

  await t.step("requests pipelined behind a streamed answer are answered after it, in order", async () => {
    using connection = await openRaw(port);
    await connection.send(
      "GET /stream?gap=200 HTTP/1.1\r\nHost: x\r\n\r\nGET /text HTTP/1.1\r\nHost: x\r\n\r\n" +
        "GET /stream?gap=0 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const first = await connection.reader.read();
    assert.equal(first?.text, "one\ntwo\nthree\n");
    assert.equal((await connection.reader.read())?.text, "héllo wörld");
    assert.equal((await connection.reader.read())?.text, "one\ntwo\nthree\n");
    assert.equal((await connection.reader.read())?.body.length, 256);
  });

  await t.step(
    "a 2 MiB stream whose chunks are all ready at once still goes out chunked, whole and in order",
    async () => {
      const response = await rawRequest(port, "GET /big-stream?n=32 HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.equal(response.status, 200);
      const bytes = response.body.bytes;
      assert.equal(bytes.length, 32 * 64 * 1024);
      for (let i = 0; i < 32; i++) {
        const part = bytes.subarray(i * 65536, (i + 1) * 65536);
        assert.ok(part.every((b) => b === i), `64 KiB piece ${i} is wrong`);
      }
      // Its length is unknown until it ends: collecting it all first would hold any amount of it in memory.
      assert.equal(
        response.body.framing,
        "chunked",
        `the stream was collected and sent with Content-Length: ${header(response, "content-length")}`,
      );
    },
  );

  await t.step("a stream that fails midway ends the connection without the last chunk", async () => {
    using connection = await openRaw(port);
    await connection.send("GET /broken-stream HTTP/1.1\r\nHost: x\r\n\r\n");
    const head = await connection.reader.readHead();
    assert.ok(head, "no response");
    assert.equal(head.status, 200);
    const received: string[] = [];
    const decoder = new TextDecoder();
    await assert.rejects(
      connection.reader.readBody(head, { onData: (bytes) => received.push(decoder.decode(bytes)) }),
      FramingError,
      "the body of a failed stream was ended as if it were complete",
    );
    assert.ok(connection.reader.closed, "the connection was not closed");
    assert.ok(!received.join("").includes("app-secret-stream-failure"), "the error reached the client");
    assert.equal((await rawRequest(port, "GET /text HTTP/1.1\r\nHost: x\r\n\r\n")).text, "héllo wörld");
  });

  await t.step("HEAD answers the headers and no body, for a string and for a stream", async () => {
    for (const path of ["/text", "/stream?gap=50"]) {
      using connection = await openRaw(port);
      // The GET right behind it must start exactly where the HEAD answer ends.
      await connection.send(`HEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes HTTP/1.1\r\nHost: x\r\n\r\n`);
      const head = await connection.reader.read({ head: true });
      assert.equal(head?.status, 200, `HEAD ${path}`);
      const next = await connection.reader.read();
      assert.equal(next?.statusLine, "HTTP/1.1 200 OK", `the answer after HEAD ${path}`);
      assert.equal(next?.body.length, 256, `the answer after HEAD ${path}`);
    }
  });

  await t.step(
    "a stream that declares its Content-Length is sent with it, not chunked, and the connection stays",
    async () => {
      using connection = await openRaw(port);
      await connection.send("GET /chained HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes HTTP/1.1\r\nHost: x\r\n\r\n");
      const response = await connection.reader.read();
      assert.equal(response?.status, 200);
      assertNotChunked(response!);
      assert.equal(header(response!, "content-length"), "23");
      assert.equal(response!.text, "through five transforms");
      assert.equal((await connection.reader.read())?.body.length, 256, "the next answer on the connection");
    },
  );

  await t.step("a stream that gives less than its declared Content-Length is cut off by closing", async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode("GET /declared-short HTTP/1.1\r\nHost: x\r\n\r\n"));
      // Everything until the server closes (bounded: a server that keeps the connection fails here).
      const received = await within(5000, "the close after a short body", new Response(conn.readable).text());
      const [head, body] = received.split("\r\n\r\n");
      assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(head, /\r\ncontent-length: 100\r\n/i);
      assert.doesNotMatch(head, /transfer-encoding/i);
      assert.equal(body, "ten bytes\n");
    } finally {
      try {
        conn.close();
      } catch {
        // closed by reading to the end
      }
    }
  });

  await t.step(
    "a stream chunk that is not bytes cuts the response off and closes, never a complete empty 200",
    async () => {
      using connection = await openRaw(port);
      await connection.send("GET /not-bytes HTTP/1.1\r\nHost: x\r\n\r\nGET /text HTTP/1.1\r\nHost: x\r\n\r\n");
      // A stream's head goes out before its first chunk is read; what follows can only end it short.
      const head = await connection.reader.readHead();
      assert.equal(head?.status, 200);
      await assert.rejects(connection.reader.readBody(head!), FramingError, "the broken body was ended as complete");
      assert.ok(connection.reader.closed, "the connection stayed open after a broken response");
    },
  );

  await t.step("a handler that returns a Promise is awaited", async () => {
    const response = await rawRequest(port, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(response.status, 200);
    assert.equal(response.text, "later");
  });

  await t.step("a handler that throws or rejects answers 500 without the error, and the workers go on", async () => {
    for (const [path, secret] of [["/throw", "app-secret-boom"], ["/reject", "app-secret-rejection"]]) {
      const response = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.equal(response.status, 500, `${path}: ${response.statusLine}`);
      assert.ok(!response.text.includes(secret), `${path} leaked the error to the client: ${response.text}`);
    }
    for (let i = 0; i < 4; i++) {
      const response = await rawRequest(port, "GET /text HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.equal(response.text, "héllo wörld");
    }
  });
});

Deno.test("a fast 256 MiB app stream is sent as it is made, not collected in the server's memory first", async () => {
  await using server = await startServer(["--workers", "1", "--app", `${APPS}echo.ts`]);
  const warm = await rawRequest(server.port, "GET /big-stream?n=4 HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(warm.body.length, 4 * 65536);
  const baseline = await rssKiB(server.child.pid);
  const sampler = sampleRss(server.child.pid, 20);
  let length = 0;
  let wrong = 0;
  let framing = "";
  let peak = 0;
  try {
    using connection = await openRaw(server.port);
    await connection.send("GET /big-stream?n=4096 HTTP/1.1\r\nHost: x\r\n\r\n");
    const head = await connection.reader.readHead();
    assert.equal(head?.status, 200);
    const body = await connection.reader.readBody(head, {
      collect: false,
      timeoutMs: 60_000,
      onData: (bytes) => {
        // Byte k of the body belongs to 64 KiB piece k >> 16, which is filled with (k >> 16) & 0xff.
        for (let i = 0; i < bytes.length; i += 4096) if (bytes[i] !== (((length + i) >> 16) & 0xff)) wrong++;
        length += bytes.length;
      },
    });
    framing = body.framing;
  } finally {
    peak = await sampler.stop();
  }
  const growth = peak - baseline;
  console.log(`256 MiB app stream (${framing}): RSS ${baseline} KiB before, peak ${peak} KiB (+${growth} KiB)`);
  assert.equal(length, 4096 * 65536);
  assert.equal(wrong, 0, "the streamed bytes are not the ones the app made");
  // Bounded, not zero: the V8 heaps grow by some tens of MiB under this churn before collecting; collecting the
  // whole stream first would add several times its size.
  assert.ok(growth < 96 * 1024, `resident memory grew by ${growth} KiB while a 256 MiB stream was sent`);
});

Deno.test("--app serves a Hono app through the pool", async (t) => {
  await using server = await startServer(["--workers", "2", "--app", `${APPS}hono.ts`]);
  const { port } = server;

  await t.step("GET / answers the text route", async () => {
    const response = await rawRequest(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert.equal(response.statusLine, "HTTP/1.1 200 OK");
    assert.equal(response.text, "Hello from Hono!");
    assert.match(header(response, "content-type") ?? "", /^text\/plain/);
  });

  await t.step("GET /json/:id answers c.json with the path parameter and the query", async () => {
    using connection = await openRaw(port);
    for (const [id, q] of [["42", "x"], ["abc", "y%20z"]]) {
      await connection.send(`GET /json/${id}?q=${q} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      const response = await connection.reader.read();
      assert.equal(response?.status, 200);
      assert.match(header(response, "content-type") ?? "", /^application\/json/);
      assert.deepEqual(JSON.parse(response.text), { id, q: decodeURIComponent(q) });
    }
  });

  await t.step("an unknown path gets Hono's 404", async () => {
    const response = await rawRequest(port, "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert.equal(response.status, 404);
  });
});

Deno.test("--app is resolved against the working directory", async () => {
  const args = (await taskArgs("start")).map((word) => word === "main.ts" ? `${PROJECT_ROOT}main.ts` : word);
  const child = new Deno.Command(Deno.execPath(), {
    args: [...args, "--port", "0", "--workers", "1", "--app", "echo.ts"],
    cwd: `${PROJECT_ROOT}${APPS}`,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await using server = new ServerProcess(child);
  await server.listening();
  const response = await rawRequest(server.port, "GET /text HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(response.text, "héllo wörld");
});

// A module that does not parse: written at run time, so the project's own checks never see it.
const SYNTAX_ERROR_APP = await Deno.makeTempFile({ prefix: "webserver-app-", suffix: ".ts" });
await Deno.writeTextFile(
  SYNTAX_ERROR_APP,
  'export default {\n  fetch() { return new Response("x"); }\n  oops: 1,\n};\n',
);
globalThis.addEventListener("unload", () => Deno.removeSync(SYNTAX_ERROR_APP));
const ABS_APPS = `${PROJECT_ROOT}${APPS}`;

const START_FAILURES: Array<[string, string, RegExp]> = [
  ["a missing --app file", `${APPS}does_not_exist.ts`, /Invalid --app: \/\S+\/does_not_exist\.ts: no such file$/],
  [
    "an --app module that throws at import",
    `${APPS}throws_at_import.ts`,
    // The error's first line and its first stack frame, as a path with line and column.
    new RegExp(`fixture exploded at import \\(at explode, ${ABS_APPS}throws_at_import\\.ts:3:9\\)$`),
  ],
  [
    "an --app module with a syntax error",
    SYNTAX_ERROR_APP,
    new RegExp(`SyntaxError: Expected ',', got 'oops' \\(at ${SYNTAX_ERROR_APP}:3:3\\)$`),
  ],
  ["an --app module without a default export", `${APPS}no_default.ts`, /the module has no default export/],
  ["an --app module whose default export has no fetch", `${APPS}no_fetch.ts`, /default export has no fetch/],
];

for (const [what, path, names] of START_FAILURES) {
  Deno.test(`${what} stops start-up with one "webserver: " line naming the problem, exit 2`, async () => {
    await using server = spawnServer(["--port", "0", "--workers", "2", "--app", path]);
    const status = await server.exited();
    assert.equal(status.code, 2, server.output());
    assert.equal(server.errors.length, 1, `expected exactly one line on stderr:\n${server.output()}`);
    assert.ok(server.errors[0].startsWith("webserver: "), server.errors[0]);
    assert.match(server.errors[0], names);
    assert.ok(!server.lines.some((line) => line.startsWith("Listening on ")), server.output());
  });
}

Deno.test("setupWorker() rejects an unusable app with AppError, which carries exit status 2", async () => {
  for (const file of ["does_not_exist.ts", "throws_at_import.ts", "no_fetch.ts"]) {
    const data = {
      root: STATIC_ROOT,
      limits: DEFAULT_LIMITS,
      app: new URL(`./fixtures/apps/${file}`, import.meta.url).href,
      appName: file,
      dotfiles: false,
      dirListing: false,
      cacheControl: "no-cache",
    };
    await assert.rejects(setupWorker(data), (error: unknown) => {
      assert.ok(error instanceof AppError, String(error));
      assert.equal(error.exitCode, 2);
      return true;
    });
  }
});
