// End to end: --drain-delay, the drain a load balancer that polls /healthz needs. From SIGTERM
// /healthz answers 503 while the server serves on, new connections included, for the delay; then
// it stops accepting, closes idle keep-alive connections and exits.
import assert from "node:assert/strict";
import { connect, get, request, send, startServer } from "./_server.ts";
import { within } from "./_within.ts";

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function health(admin: string): Promise<number> {
  const response = await within(5000, "GET /healthz", fetch(`${admin}healthz`));
  await response.body?.cancel();
  return response.status;
}

/** Whether a new TCP connection to `port` is accepted and answered `/`. */
async function servesNewConnection(port: number): Promise<boolean> {
  try {
    return (await within(5000, "GET / on a new connection", request(port, get("/")))).status === 200;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return false;
    throw error;
  }
}

Deno.test("--drain-delay 2: /healthz is 503 at once, new connections are served for the delay, then refused", async () => {
  await using server = await startServer(["--quiet", "--workers", "1", "--admin", "0", "--drain-delay", "2"]);
  const admin = await server.adminUrl();
  assert.equal(await health(admin), 200);
  const kept = await connect(server.port);
  await send(kept.conn, get("/"));
  assert.equal((await kept.reader.read())?.status, 200);

  const signalled = performance.now();
  server.kill("SIGTERM");
  await server.waitForLine(/^Draining: \/healthz answers 503; serving on for 2 s/);
  assert.equal(await health(admin), 503, "health turns 503 at once");

  // Well inside the delay: a new connection is accepted and served, and so is a kept-alive one,
  // without Connection: close (the balancer is still sending; nothing is being closed yet).
  await delay(Math.max(0, 800 - (performance.now() - signalled)));
  assert.ok(await servesNewConnection(server.port), "a new connection during the delay is served");
  await send(kept.conn, get("/"));
  const during = await kept.reader.read();
  assert.equal(during?.status, 200);
  assert.equal(during?.headers.get("connection"), undefined);
  assert.ok(performance.now() - signalled < 1900, "checked before the delay ended");

  // Past the delay (with a wide margin): the idle keep-alive connection is closed and nothing new
  // is accepted; the process exits 0.
  assert.ok(await kept.reader.waitClosed(4000), "the idle connection is closed after the delay");
  assert.ok(performance.now() - signalled > 1900, "not closed before the delay");
  kept.conn.close();
  assert.equal((await server.exited()).code, 0, server.output());
  assert.equal(await servesNewConnection(server.port), false);
});

Deno.test("without --drain-delay the listener closes at SIGTERM while a /sleep still finishes", async () => {
  await using server = await startServer(["--quiet", "--workers", "1", "--admin", "0"]);
  const admin = await server.adminUrl();
  const sleeping = request(server.port, get("/sleep"));
  await delay(300);
  server.kill("SIGTERM");
  await server.waitForLine(/shutting down gracefully/);
  assert.equal(await health(admin), 503);
  // The process is still up (the /sleep runs), but the port no longer accepts.
  assert.equal(await servesNewConnection(server.port), false);
  assert.ok(!server.lines.some((line) => /^Draining:/.test(line)), server.output());
  assert.equal((await sleeping).status, 200);
  assert.equal((await server.exited()).code, 0);
});

Deno.test("a second signal during the drain delay exits at once", async () => {
  await using server = await startServer(["--quiet", "--workers", "1", "--drain-delay", "30"]);
  const signalled = performance.now();
  server.kill("SIGTERM");
  await server.waitForLine(/^Draining:/);
  await delay(700);
  server.kill("SIGTERM");
  const status = await server.exited(10_000);
  assert.equal(status.code, 143, server.output());
  assert.ok(performance.now() - signalled < 10_000);
  assert.ok(server.lines.some((line) => /exiting now/.test(line)), server.output());
});

Deno.test("--max-requests still stops at once with a --drain-delay: its last response already said close", async () => {
  await using server = await startServer(["--quiet", "--workers", "1", "--max-requests", "1", "--drain-delay", "30"]);
  assert.equal((await request(server.port, get("/"))).status, 200);
  assert.equal((await server.exited(10_000)).code, 0, server.output());
});
