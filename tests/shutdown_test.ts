// Graceful shutdown of the real server process.
import assert from "node:assert/strict";
import { connect, get, request, send, startServer } from "./_server.ts";

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("SIGTERM during a /sleep delivers its full response, stops each worker, and exits 0", async () => {
  await using server = await startServer(["--workers", "3"]);
  const idle = await connect(server.port); // an idle keep-alive connection must not hold up the exit
  await send(idle.conn, get("/"));
  assert.equal((await idle.reader.read())?.status, 200);
  const sleeping = request(server.port, get("/sleep"));
  await delay(300);
  server.kill("SIGTERM");
  const response = await sleeping;
  assert.equal(response.status, 200);
  assert.match(response.text, /<h1>Hello!<\/h1>/);
  assert.equal(response.body.length, Number(response.headers.get("content-length")));
  const status = await server.exited();
  assert.equal(status.code, 0, server.output());
  const stops = server.lines.filter((l) => /^Shutting down worker \d+$/.test(l));
  assert.deepEqual(stops, ["Shutting down worker 0", "Shutting down worker 1", "Shutting down worker 2"]);
  assert.ok(await idle.reader.waitClosed(), "the idle keep-alive connection was not closed");
  idle.conn.close();
  // Nothing listens any more.
  await assert.rejects(request(server.port, get("/")));
});

Deno.test("SIGINT shuts down gracefully too", async () => {
  await using server = await startServer(["--workers", "1"]);
  server.kill("SIGINT");
  assert.equal((await server.exited()).code, 0);
  assert.ok(server.lines.includes("Shutting down worker 0"));
});

Deno.test("a repeated signal within milliseconds (as deno task forwards it) still shuts down gracefully", async () => {
  await using server = await startServer(["--workers", "1"]);
  const sleeping = request(server.port, get("/sleep"));
  await delay(300);
  server.kill("SIGINT");
  await delay(20);
  server.kill("SIGINT");
  assert.equal((await sleeping).status, 200);
  assert.equal((await server.exited()).code, 0, server.output());
});

Deno.test("a second signal later exits at once, without waiting for a /sleep", async () => {
  await using server = await startServer(["--workers", "1"]);
  const sleeping = request(server.port, get("/sleep")).catch((error) => error);
  await delay(300);
  const start = performance.now();
  server.kill("SIGTERM");
  await delay(1000);
  server.kill("SIGTERM");
  const status = await server.exited();
  const elapsed = performance.now() - start;
  assert.notEqual(status.code, 0);
  assert.ok(elapsed < 3500, `exit took ${elapsed} ms`);
  assert.ok(server.lines.some((l) => /exiting now/.test(l)), server.output());
  await sleeping;
});

Deno.test("--max-requests 2 serves two requests, then shuts down and exits 0", async () => {
  await using server = await startServer(["--workers", "2", "--max-requests", "2"]);
  const { conn, reader } = await connect(server.port);
  await send(conn, get("/"));
  assert.equal((await reader.read())?.status, 200);
  await send(conn, get("/nope"));
  const second = await reader.read();
  assert.equal(second?.status, 404);
  assert.equal(second?.headers.get("connection"), "close");
  assert.ok(await reader.waitClosed());
  conn.close();
  assert.equal((await server.exited()).code, 0, server.output());
  assert.equal(server.lines.filter((l) => /^GET /.test(l)).length, 2);
  assert.equal(server.lines.filter((l) => /^Shutting down worker /.test(l)).length, 2);
});

Deno.test("a request that arrives after shutdown began gets 503 and a close, not silence", async () => {
  await using server = await startServer(["--workers", "1"]);
  const { conn, reader } = await connect(server.port);
  await send(conn, get("/sleep"));
  await delay(300);
  server.kill("SIGTERM");
  await server.waitForLine(/shutting down gracefully/);
  await send(conn, get("/"));
  assert.equal((await reader.read())?.status, 200); // the /sleep, finished
  const late = await reader.read();
  assert.equal(late?.status, 503);
  assert.equal(late?.headers.get("connection"), "close");
  assert.ok(await reader.waitClosed());
  conn.close();
  assert.equal((await server.exited()).code, 0);
});

Deno.test("a connection accepted before SIGTERM gets its first request served, with a close, even after the listener closed", async () => {
  await using server = await startServer(["--workers", "1"]);
  const sleeping = request(server.port, get("/sleep")); // keeps the server up through the drain
  const fresh = await connect(server.port);
  await delay(300);
  server.kill("SIGTERM");
  await server.waitForLine(/shutting down gracefully/);
  // Within the drain's grace (500 ms for an idle connection): the request its client sent
  // before it could know is served, not refused with 503.
  await send(fresh.conn, get("/"));
  const answer = await fresh.reader.read();
  assert.equal(answer?.status, 200);
  assert.equal(answer?.headers.get("connection"), "close");
  assert.ok(await fresh.reader.waitClosed());
  fresh.conn.close();
  assert.equal((await sleeping).status, 200);
  assert.equal((await server.exited()).code, 0);
});

Deno.test("--max-requests is never exceeded: a connection's first request past it gets 503", async () => {
  await using server = await startServer(["--workers", "1", "--max-requests", "1"]);
  const waiting = await connect(server.port); // accepted before the last request
  assert.equal((await request(server.port, get("/"))).status, 200);
  await send(waiting.conn, get("/"));
  const late = await waiting.reader.read();
  assert.equal(late?.status, 503);
  waiting.conn.close();
  assert.equal((await server.exited()).code, 0, server.output());
  assert.equal(server.lines.filter((l) => /^GET \/ 200/.test(l)).length, 1);
});

Deno.test("a client that never reads its responses cannot hold up a graceful shutdown", async () => {
  await using server = await startServer(["--workers", "2", "--quiet", "--body-timeout", "1"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  // Megabytes of pipelined requests whose responses fill the socket buffers, never read.
  const burst = new TextEncoder().encode(get("/").repeat(2000));
  const writing = (async () => {
    try {
      for (let i = 0; i < 40; i++) await send(conn, burst);
    } catch {
      // the server closed the connection
    }
  })();
  await delay(1500);
  const start = performance.now();
  server.kill("SIGTERM");
  const status = await server.exited(15_000);
  const elapsed = performance.now() - start;
  assert.equal(status.code, 0, server.output());
  assert.ok(elapsed < 6000, `shutdown took ${elapsed} ms`);
  conn.close();
  await writing;
});
