// End to end: --cert and --key serve HTTP/1.1 over TLS, with a key pair the test makes with
// Debian's openssl. Everything behaves as over plain TCP; clients that do not speak TLS, or do not
// trust the certificate, are their own problem, never the server's.
import assert from "node:assert/strict";
import { join } from "node:path";
import { get, ResponseReader, send, spawnServer, startServer } from "./_server.ts";
import { writeFiles } from "./_static.ts";
import { within } from "./_within.ts";
import { keyPair } from "./_tls.ts";

const DIR = await Deno.makeTempDir({ prefix: "webserver-tls-" });
globalThis.addEventListener("unload", () => Deno.removeSync(DIR, { recursive: true }));

const LOCAL = await keyPair(DIR, "local", "DNS:localhost,IP:127.0.0.1");
const OTHER = await keyPair(DIR, "other", "DNS:other.example");
// Valid until a day before it was made: expired from the start.
const EXPIRED = await keyPair(DIR, "expired", "DNS:localhost,IP:127.0.0.1", "-1");
const ROOT = join(DIR, "site");
await writeFiles(ROOT, { "data.txt": "0123456789" });

/** A server over TLS with `pair` (the local one by default), quiet, with `args` added. */
function startTls(args: string[], pair = LOCAL) {
  return startServer(["--quiet", "--cert", pair.cert, "--key", pair.key, ...args]);
}

/** Asserts that a client trusting only `caCerts` cannot complete the handshake with the server on `port`. */
async function assertHandshakeFails(port: number, caCerts: string[]): Promise<void> {
  await assert.rejects(async () => {
    const { conn } = await connectTls(port, caCerts);
    try {
      await conn.handshake();
    } finally {
      conn.close();
    }
  });
}

async function connectTls(port: number, caCerts = [LOCAL.pem]) {
  const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts, alpnProtocols: ["http/1.1"] });
  return { conn, reader: new ResponseReader(conn) };
}

Deno.test("over TLS: GET, HEAD, keep-alive, pipelining, a static Range and an app's https URL", async () => {
  await using server = await startTls(["--workers", "2", "--root", ROOT]);
  assert.match(server.lines[0], /^Listening on https:\/\/127\.0\.0\.1:\d+\//);
  const { conn, reader } = await connectTls(server.port);
  try {
    const handshake = await conn.handshake();
    assert.equal(handshake.alpnProtocol, "http/1.1");
    // Keep-alive and pipelining: three requests in one write, on one connection.
    await send(conn, get("/data.txt") + get("/data.txt", "Range: bytes=2-5\r\n") + get("/nope"));
    const whole = await reader.read();
    assert.equal(whole?.status, 200);
    assert.equal(whole?.text, "0123456789");
    const part = await reader.read();
    assert.equal(part?.status, 206);
    assert.equal(part?.text, "2345");
    assert.equal(part?.headers.get("content-range"), "bytes 2-5/10");
    assert.equal((await reader.read())?.status, 404);
    await send(conn, "HEAD /data.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const head = await reader.read({ head: true });
    assert.equal(head?.headers.get("content-length"), "10");
  } finally {
    conn.close();
  }

  await using app = await startTls(["--workers", "1", "--app", "tests/fixtures/apps/echo.ts"]);
  const tls = await connectTls(app.port);
  try {
    await send(tls.conn, get("/echo?x=1", "").replace("Host: 127.0.0.1", "Host: localhost:8443"));
    const echoed = JSON.parse((await tls.reader.read())!.text);
    assert.equal(echoed.url, "https://localhost:8443/echo?x=1");
  } finally {
    tls.conn.close();
  }
});

Deno.test("over TLS: plain HTTP and a client that distrusts the certificate are closed, and the server goes on", async () => {
  await using server = await startTls(["--workers", "1"]);
  // Plain HTTP to the TLS port: no answer that parses as HTTP, and a closed connection.
  const plain = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await send(plain, get("/"));
  const got = await within(5000, "the close of a plain-HTTP connection", new Response(plain.readable).bytes());
  assert.ok(!new TextDecoder().decode(got).startsWith("HTTP/1.1 200"), "a plain-HTTP request was served");

  // A client that does not trust the certificate gives up during the handshake; that is its business.
  await assertHandshakeFails(server.port, [OTHER.pem]);

  const { conn, reader } = await connectTls(server.port);
  try {
    await send(conn, get("/"));
    assert.equal((await reader.read())?.status, 200, "a good client is still served");
  } finally {
    conn.close();
  }
  assert.deepEqual(server.errors, [], "the server wrote to stderr");
});

/**
 * Milliseconds until the server closes or resets `conn`, or `undefined` if it is still open after
 * `limitMs` (this side then closes it).
 */
async function closedAfter(conn: Deno.Conn, limitMs: number): Promise<number | undefined> {
  const start = performance.now();
  let gaveUp = false;
  const timer = setTimeout(() => {
    gaveUp = true;
    conn.close();
  }, limitMs);
  try {
    for (;;) {
      if (await conn.read(new Uint8Array(1024)) === null) return performance.now() - start;
    }
  } catch (error) {
    if (gaveUp) return undefined;
    if (error instanceof Deno.errors.ConnectionReset) return performance.now() - start;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("the TLS handshake counts against --header-timeout: silent and stalled handshakes are closed", async () => {
  await using server = await startTls(["--workers", "1", "--header-timeout", "1"]);
  // Connected, and not a byte sent: open well inside the timeout, closed soon after it (the
  // deadline sweep runs every 250 ms).
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  assert.equal(await closedAfter(silent, 700), undefined, "closed inside the header timeout");
  const late = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const silentMs = await closedAfter(late, 5000);
  assert.ok(silentMs !== undefined && silentMs >= 900, `a silent client closed after ${silentMs} ms`);
  // The first five bytes of a ClientHello, then nothing.
  const stalled = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await stalled.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00]));
  const stalledMs = await closedAfter(stalled, 5000);
  assert.ok(stalledMs !== undefined && stalledMs >= 900, `a stalled handshake closed after ${stalledMs} ms`);
  // A client that completes its handshake and sends its request in time is served.
  const { conn, reader } = await connectTls(server.port);
  try {
    await send(conn, get("/"));
    assert.equal((await reader.read())?.status, 200);
  } finally {
    conn.close();
  }
  assert.deepEqual(server.errors, [], "the server wrote to stderr");
});

Deno.test("over TLS a client that pipelines without reading is held off, as over TCP, not buffered in memory", async () => {
  await using server = await startTls(["--workers", "1"]);
  const { conn } = await connectTls(server.port);
  // 64 KiB of pipelined requests at a time, until a write stalls for a second or 64 MiB went in.
  const chunk = new TextEncoder().encode(get("/nonexistent").repeat(Math.ceil(65536 / get("/nonexistent").length)));
  const LIMIT = 64 * 1024 * 1024;
  let sent = 0;
  try {
    while (sent < LIMIT) {
      const wrote = await Promise.race([
        conn.write(chunk.subarray(sent % chunk.length)),
        new Promise<null>((resolve) => setTimeout(resolve, 1000, null)),
      ]);
      if (wrote === null) break;
      sent += wrote;
    }
  } finally {
    conn.close();
  }
  // Loopback's socket buffers take a few MiB; everything past them would be the server's memory.
  assert.ok(sent < 32 * 1024 * 1024, `the client got ${(sent / 1048576).toFixed(1)} MiB in before being held off`);
  const { conn: other, reader } = await connectTls(server.port);
  try {
    await send(other, get("/"));
    assert.equal((await reader.read())?.status, 200, "another client is served");
  } finally {
    other.close();
  }
});

Deno.test("a certificate for another host or an expired one is the client's problem: its handshake fails, the server lives on", async () => {
  await using server = await startTls(["--workers", "1"], OTHER);
  for (let i = 0; i < 3; i++) {
    await assertHandshakeFails(server.port, [OTHER.pem]);
  }
  await using expired = await startTls(["--workers", "1"], EXPIRED);
  for (let i = 0; i < 3; i++) {
    await assertHandshakeFails(expired.port, [EXPIRED.pem]);
  }
  assert.deepEqual(expired.errors, [], "the server with the expired certificate wrote to stderr");
  const exited = await Promise.race([server.status.then(() => true), new Promise((r) => setTimeout(r, 200, false))]);
  assert.equal(exited, false, "the server exited");
  assert.deepEqual(server.errors, [], "the server wrote to stderr");
});

Deno.test("--cert and --key that cannot be used stop start-up with one line, exit 2", async () => {
  const garbage = join(DIR, "garbage.pem");
  await Deno.writeTextFile(garbage, "not a certificate\n");
  const cases: Array<[string[], RegExp]> = [
    [["--cert", LOCAL.cert], /^webserver: Invalid --cert: --cert and --key go together/],
    [["--key", LOCAL.key], /^webserver: Invalid --key: --cert and --key go together/],
    [
      ["--cert", join(DIR, "missing.pem"), "--key", LOCAL.key],
      /^webserver: Invalid --cert: \S+missing\.pem: no such file$/,
    ],
    [["--cert", garbage, "--key", LOCAL.key], /^webserver: Invalid --cert: \S+garbage\.pem holds no PEM cert$/],
    [["--cert", LOCAL.cert, "--key", OTHER.key], /^webserver: Invalid --cert\/--key: cannot use them for TLS/],
  ];
  for (const [args, message] of cases) {
    const server = spawnServer(["--port", "0", "--workers", "1", ...args]);
    const status = await server.exited();
    assert.equal(status.code, 2, `${args.join(" ")}: ${server.output()}`);
    assert.equal(server.errors.length, 1, server.output());
    assert.match(server.errors[0], message);
  }
});
