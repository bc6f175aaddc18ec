// A client that leaves in the middle of a streamed response must free the worker producing it.
import assert from "node:assert/strict";
import { connect, get, request, send, startServer } from "./_server.ts";

Deno.test("a client that hangs up mid-stream frees the worker at once, not at the handler timeout", async () => {
  await using server = await startServer(["--workers", "1", "--quiet", "--app", "tests/fixtures/apps/echo.ts"]);
  const { conn } = await connect(server.port);
  // 100 000 chunks of 64 KiB: far more than anyone reads.
  await send(conn, get("/big-stream?n=100000"));
  const buffer = new Uint8Array(64 * 1024);
  let received = 0;
  while (received < 1024 * 1024) received += (await conn.read(buffer)) ?? 0;
  conn.close();
  const start = performance.now();
  const response = await request(server.port, get("/text"));
  const elapsed = performance.now() - start;
  assert.equal(response.status, 200);
  // The only worker was streaming; with the default 30 s handler timeout it would be held that long.
  assert.ok(elapsed < 3000, `the next request waited ${elapsed} ms for the worker`);
});

Deno.test("a client that hangs up while a stream is quiet frees the worker without waiting for the next piece", async () => {
  await using server = await startServer(["--workers", "1", "--quiet", "--app", "tests/fixtures/apps/echo.ts"]);
  const { conn, reader } = await connect(server.port);
  await send(conn, get("/quiet-stream"));
  const buffer = new Uint8Array(4096);
  await conn.read(buffer); // the head, and perhaps the first piece
  conn.close();
  void reader;
  const start = performance.now();
  assert.equal((await request(server.port, get("/text"))).status, 200);
  const elapsed = performance.now() - start;
  assert.ok(elapsed < 3000, `the next request waited ${elapsed} ms for the worker`);
});

Deno.test("a stream to HTTP/1.0 that reuses one buffer arrives whole, and the app keeps its buffer", async () => {
  await using server = await startServer(["--workers", "1", "--quiet", "--app", "tests/fixtures/apps/echo.ts"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await send(conn, "GET /ping?n=3 HTTP/1.0\r\n\r\n");
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) chunks.push(buffer.slice(0, n));
  conn.close();
  const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  assert.ok(text.endsWith("\r\n\r\nping\nping\nping\n"), JSON.stringify(text.slice(-40)));
  const again = await request(server.port, get("/ping-once"));
  assert.equal(again.status, 200);
  assert.equal(again.text, "ping\n");
});

Deno.test("a stream waiting behind a slow pipelined response is not cut off by the handler timeout", async () => {
  await using server = await startServer([
    "--workers",
    "2",
    "--quiet",
    "--handler-timeout",
    "1",
    "--app",
    "tests/fixtures/apps/echo.ts",
  ]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  // The first stream takes about 1.6 s in pieces 0.8 s apart (each gap within the 1 s timeout); the second
  // (40 × 64 KiB) must wait for it, longer than the timeout, holding unacknowledged pieces.
  await send(conn, get("/stream?gap=800") + get("/big-stream?n=40", "Connection: close\r\n"));
  const buffer = new Uint8Array(65536);
  let total = 0;
  for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) total += n;
  conn.close();
  assert.ok(total > 40 * 65536, `only ${total} bytes arrived`);
  assert.ok(!server.errors.some((l) => /timed out/.test(l)), server.output());
});

Deno.test("requests pipelined by a client that resets the connection are dropped before they run", async () => {
  await using server = await startServer(["--workers", "1", "--quiet", "--app", "tests/fixtures/apps/echo.ts"]);
  const { conn } = await connect(server.port);
  // The first request holds the only worker for 0.5 s, the second for 2 s; the last two wait in the queue.
  await send(conn, get("/block?ms=500") + get("/block?ms=2000").repeat(3));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  // Closing with the first answer unread makes the system reset the connection.
  conn.close();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const start = performance.now();
  assert.equal((await request(server.port, get("/text"))).status, 200);
  const elapsed = performance.now() - start;
  // The running request ends about 1 s from now; had the queued two run as well, 5 s.
  assert.ok(elapsed < 3500, `the next request waited ${elapsed} ms behind requests nobody could receive`);
});
