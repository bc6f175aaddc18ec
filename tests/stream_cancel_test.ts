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
