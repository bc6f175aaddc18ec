// End to end: a 1 GiB static file streams from the real server without filling its memory, while other requests
// go on being answered, and a Range request near its end gets exactly the bytes asked for.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { assertHello, startServer, STATIC_ROOT } from "./_server.ts";
import { header, openRaw, rawRequest } from "./_chunked.ts";
import { rssKiB } from "./_proc.ts";
import { within } from "./_within.ts";

const SIZE = 1 << 30;
/** Distinctive bytes written into the otherwise sparse (all-zero) file, so its hash is not that of zeros. */
const MARKS: Array<[number, string]> = [
  [0, "BEGIN big.bin"],
  [4096 - 3, "across a page boundary"],
  [123_456_789, "somewhere in the middle"],
  [(1 << 29) + 7, "half way"],
  [SIZE - 700, "near the end"],
  [SIZE - 5, "END!!"],
];
const RANGE_START = 1_073_741_000;
/** The whole test must finish within this. */
const TEST_BUDGET_MS = 120_000;
const MAX_RSS_GROWTH_KIB = 64 * 1024;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function makeRoot(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webserver-large-file-" });
  await Deno.copyFile(join(STATIC_ROOT, "hello.html"), join(dir, "hello.html"));
  await Deno.copyFile(join(STATIC_ROOT, "404.html"), join(dir, "404.html"));
  using file = await Deno.open(join(dir, "big.bin"), { create: true, write: true, truncate: true });
  await file.truncate(SIZE);
  for (const [offset, text] of MARKS) {
    await file.seek(offset, Deno.SeekMode.Start);
    const bytes = new TextEncoder().encode(text);
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
  }
  return dir;
}

/** The SHA-256 of the file, fed in pieces as the download is, and `count` bytes from `from`. */
async function expected(path: string, from: number, count: number): Promise<{ sha256: string; tail: Uint8Array }> {
  using file = await Deno.open(path, { read: true });
  const hash = createHash("sha256");
  const piece = new Uint8Array(4 << 20);
  let total = 0;
  for (;;) {
    const n = await file.read(piece);
    if (n === null) break;
    hash.update(piece.subarray(0, n));
    total += n;
  }
  assert.equal(total, SIZE);
  const tail = new Uint8Array(count);
  await file.seek(from, Deno.SeekMode.Start);
  let got = 0;
  while (got < count) {
    const n = await file.read(tail.subarray(got));
    if (n === null) break;
    got += n;
  }
  return { sha256: hash.digest("hex"), tail };
}

Deno.test("a 1 GiB static file streams with bounded memory while other requests are answered", async (t) => {
  const testEnds = performance.now() + TEST_BUDGET_MS;
  const remaining = () => Math.max(1000, testEnds - performance.now());
  const root = await makeRoot();
  try {
    const want = await expected(join(root, "big.bin"), RANGE_START, SIZE - RANGE_START);
    await using server = await startServer(["--root", root, "--workers", "2"]);
    const { port } = server;
    const pid = server.child.pid;

    await t.step("GET / still answers hello.html from the new root", async () => {
      const response = await rawRequest(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      assert.equal(response.status, 200);
      assertHello(response.text);
    });

    await t.step("HEAD /big.bin answers its full length and no body", async () => {
      using connection = await openRaw(port);
      await connection.send(
        "HEAD /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      );
      const head = await connection.reader.read({ head: true });
      assert.ok(head, "no response to HEAD /big.bin");
      assert.equal(head.status, 200, head.statusLine);
      assert.equal(header(head, "content-length"), String(SIZE));
      const next = await connection.reader.read();
      assert.equal(next?.statusLine, "HTTP/1.1 200 OK", "the answer after HEAD /big.bin");
    });

    await t.step(
      "GET /big.bin sends every byte, memory stays flat, and GET / answers in under 1 s meanwhile",
      async () => {
        const baseline = await rssKiB(pid);
        let peak = baseline;
        let downloading = true;
        const linesBefore = server.lines.length;
        const sampler = (async () => {
          while (downloading) {
            peak = Math.max(peak, await rssKiB(pid));
            await delay(50);
          }
        })();
        const probes: Array<{ status: number; ms: number; error?: string }> = [];
        const prober = (async () => {
          while (downloading) {
            await delay(200);
            const start = performance.now();
            try {
              const response = await rawRequest(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", { timeoutMs: 5000 });
              probes.push({ status: response.status, ms: performance.now() - start });
            } catch (error) {
              probes.push({ status: 0, ms: performance.now() - start, error: String(error) });
            }
          }
        })();

        const started = performance.now();
        let received = 0;
        try {
          using download = await openRaw(port);
          await download.send("GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
          const head = await download.reader.readHead({ timeoutMs: 10_000 });
          assert.ok(head, "no response to GET /big.bin");
          assert.equal(head.statusLine, "HTTP/1.1 200 OK");
          assert.equal(header(head, "content-length"), String(SIZE));
          const hash = createHash("sha256");
          const body = await download.reader.readBody(head, {
            collect: false,
            timeoutMs: remaining() - 5000,
            onData: (bytes) => {
              received += bytes.length;
              hash.update(bytes);
            },
          });
          assert.equal(body.length, SIZE);
          assert.equal(received, SIZE);
          assert.equal(hash.digest("hex"), want.sha256, "the downloaded bytes differ from big.bin");

          // The connection is still in step: the next request on it is answered normally.
          await download.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
          assert.equal((await download.reader.read())?.status, 200);
        } finally {
          downloading = false;
          await sampler;
          await prober;
        }
        const seconds = (performance.now() - started) / 1000;
        const growth = peak - baseline;
        console.log(
          `1 GiB in ${seconds.toFixed(1)} s; RSS ${baseline} KiB before, peak ${peak} KiB (+${growth} KiB); ` +
            `${probes.length} GET / meanwhile, slowest ${Math.max(...probes.map((p) => p.ms)).toFixed(0)} ms`,
        );
        assert.ok(probes.length > 0, "no GET / was made during the download");
        for (const probe of probes) {
          assert.equal(probe.status, 200, `a GET / during the download failed: ${JSON.stringify(probe)}`);
          // As this process sees it, busy as it is reading and hashing the gigabyte.
          assert.ok(probe.ms < 3000, `a GET / during the download took ${probe.ms.toFixed(0)} ms`);
        }
        // As the server measured it (its access log), from the request's arrival to the answer's last byte.
        await server.waitForLine(/^GET \/big\.bin 200 /);
        const served = server.lines.slice(linesBefore).filter((line) => /^GET \/ 200 /.test(line));
        assert.ok(served.length >= probes.length, server.output());
        for (const line of served) {
          const ms = Number(line.match(/ ([\d.]+)ms /)![1]);
          assert.ok(ms < 1000, `the server took ${ms} ms for a GET / during the download: ${line}`);
        }
        assert.ok(growth < MAX_RSS_GROWTH_KIB, `resident memory grew by ${growth} KiB during the download`);
      },
    );

    await t.step("a client that reads slowly, then hangs up, does not make the server buffer the file", async () => {
      const baseline = await rssKiB(pid);
      let peak = baseline;
      let received = 0;
      {
        using slow = await openRaw(port);
        await slow.send("GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        // About 10 MiB/s for 3 s: a server that reads ahead without back-pressure has the whole file in memory by then.
        const piece = new Uint8Array(64 * 1024);
        const until = performance.now() + 3000;
        while (performance.now() < until) {
          for (let i = 0; i < 16; i++) {
            const n = await within(10_000, "a piece of the slow download", slow.conn.read(piece));
            if (n === null) throw new Error(`the server closed the slow download after ${received} bytes`);
            received += n;
          }
          peak = Math.max(peak, await rssKiB(pid));
          await delay(100);
        }
      }
      const growth = peak - baseline;
      console.log(
        `slow reader: ${received} bytes in 3 s; RSS ${baseline} KiB before, peak ${peak} KiB (+${growth} KiB)`,
      );
      assert.ok(received < SIZE / 4, `the slow reader got ${received} bytes, so it was not slow`);
      assert.ok(growth < MAX_RSS_GROWTH_KIB, `resident memory grew by ${growth} KiB while a client read slowly`);
      // The abandoned download holds nothing up.
      const start = performance.now();
      const response = await rawRequest(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      assert.equal(response.status, 200);
      assert.ok(performance.now() - start < 1000);
    });

    await t.step("Range: bytes=1073741000- answers 206 with exactly the last 824 bytes", async () => {
      const response = await rawRequest(
        port,
        `GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=${RANGE_START}-\r\n\r\n`,
      );
      assert.equal(response.statusLine, "HTTP/1.1 206 Partial Content");
      assert.equal(header(response, "content-range"), `bytes ${RANGE_START}-${SIZE - 1}/${SIZE}`);
      assert.equal(header(response, "content-length"), String(SIZE - RANGE_START));
      assert.equal(response.body.length, 824);
      assert.deepEqual(response.body.bytes, want.tail);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
