// End to end: a response that goes out in several sends (a head, then a file read from disk) is not held back by
// Nagle's algorithm waiting for the client's delayed acknowledgement, request after request on one connection.
import assert from "node:assert/strict";
import { join } from "node:path";
import { connect, get, send, startServer, STATIC_ROOT } from "./_server.ts";

const FILE_BYTES = 100_000;
const REQUESTS = 20;
// Measured on loopback: about 35 ms for all 20 with the delay switched off, about 700 ms with it on
// (each response's last piece waits some 40 ms for the acknowledgement).
const BUDGET_MS = 400;

Deno.test("twenty file responses in a row on one keep-alive connection are not delayed by Nagle's algorithm", async () => {
  const root = await Deno.makeTempDir({ prefix: "webserver-send-delay-" });
  try {
    await Deno.copyFile(join(STATIC_ROOT, "hello.html"), join(root, "hello.html"));
    await Deno.copyFile(join(STATIC_ROOT, "404.html"), join(root, "404.html"));
    const content = new Uint8Array(FILE_BYTES).map((_, i) => (i * 31) & 0xff);
    await Deno.writeFile(join(root, "file.bin"), content);
    await using server = await startServer(["--root", root, "--quiet"]);
    const { conn, reader } = await connect(server.port);
    try {
      // Once to warm up (the first request also starts the JIT), then timed.
      await send(conn, get("/file.bin"));
      assert.equal((await reader.read())?.body.length, FILE_BYTES);
      const start = performance.now();
      for (let i = 0; i < REQUESTS; i++) {
        await send(conn, get("/file.bin"));
        const response = await reader.read();
        assert.equal(response?.status, 200);
        assert.deepEqual(response.body, content);
      }
      const elapsed = performance.now() - start;
      assert.ok(elapsed < BUDGET_MS, `${REQUESTS} file responses took ${elapsed.toFixed(0)} ms`);
    } finally {
      conn.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
