// End to end: the admin listener of a real server process (--admin): exact metrics in the
// Prometheus text format, the /stats the live page reads, /healthz through a drain, and its
// start-up line and warning.
import assert from "node:assert/strict";
import { get, request, startServer } from "./_server.ts";
import { parsePrometheus, sampleValue } from "./_prometheus.ts";
import { within } from "./_within.ts";

interface Stats {
  draining: boolean;
  connections: number;
  queue: { length: number; max: number };
  workers: Array<{
    id: number;
    busy: boolean;
    inflight: number;
    restarts: number;
    oldest: { request: string; ageMs: number } | null;
  }>;
  minute: { count: number };
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function fetchText(url: string): Promise<{ status: number; text: string; type: string | null }> {
  const response = await within(5000, `GET ${url}`, fetch(url));
  return { status: response.status, text: await response.text(), type: response.headers.get("content-type") };
}

async function metrics(admin: string) {
  const { status, text, type } = await fetchText(`${admin}metrics`);
  assert.equal(status, 200);
  assert.equal(type, "text/plain; version=0.0.4; charset=utf-8");
  return parsePrometheus(text);
}

async function stats(admin: string): Promise<Stats> {
  return JSON.parse((await fetchText(`${admin}stats`)).text);
}

/** Polls until `check` holds (bounded), returning the stats that satisfied it. */
async function until(admin: string, what: string, check: (stats: Stats) => boolean, ms = 4000): Promise<Stats> {
  const deadline = Date.now() + ms;
  for (;;) {
    const current = await stats(admin);
    if (check(current)) return current;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms; last /stats: ${JSON.stringify(current)}`);
    await delay(50);
  }
}

Deno.test("/metrics counts exactly what was served, in the Prometheus text format, and sees a /sleep busy", async () => {
  await using server = await startServer(["--quiet", "--workers", "2", "--admin", "0"]);
  const admin = await server.adminUrl();
  for (let i = 0; i < 7; i++) assert.equal((await request(server.port, get("/"))).status, 200);
  for (let i = 0; i < 3; i++) assert.equal((await request(server.port, get("/nope"))).status, 404);

  let families = await metrics(admin);
  for (
    const name of [
      "webserver_requests_total",
      "webserver_request_duration_seconds",
      "webserver_requests_in_flight",
      "webserver_queue_length",
      "webserver_workers",
      "webserver_workers_busy",
      "webserver_worker_restarts_total",
      "webserver_connections_open",
      "process_resident_memory_bytes",
    ]
  ) {
    assert.ok(families.get(name)?.help, `${name} has HELP and TYPE`);
  }
  assert.equal(sampleValue(families, "webserver_requests_total", { code: "200" }), 7);
  assert.equal(sampleValue(families, "webserver_requests_total", { code: "404" }), 3);
  assert.equal(sampleValue(families, "webserver_request_duration_seconds_count"), 10);
  assert.equal(sampleValue(families, "webserver_workers"), 2);
  assert.equal(sampleValue(families, "webserver_workers_busy"), 0);
  assert.equal(sampleValue(families, "webserver_worker_restarts_total"), 0);
  assert.ok(sampleValue(families, "process_resident_memory_bytes") > 10_000_000);

  // A /sleep holds one worker: busy 1, in flight 1, and the page's data names it.
  const sleeping = request(server.port, get("/sleep"));
  const busy = await until(admin, "a worker busy with /sleep", (s) => s.workers.some((w) => w.busy));
  const worker = busy.workers.find((w) => w.busy)!;
  assert.equal(worker.oldest?.request, "GET /sleep");
  families = await metrics(admin);
  assert.equal(sampleValue(families, "webserver_workers_busy"), 1);
  assert.equal(sampleValue(families, "webserver_requests_in_flight"), 1);
  assert.equal(sampleValue(families, "webserver_connections_open"), 1);
  assert.equal((await sleeping).status, 200);
  await until(admin, "idle after the /sleep", (s) => s.workers.every((w) => !w.busy));
  families = await metrics(admin);
  assert.equal(sampleValue(families, "webserver_requests_total", { code: "200" }), 8);
  assert.equal(sampleValue(families, "webserver_workers_busy"), 0);
  assert.equal((await stats(admin)).minute.count, 11);
});

Deno.test("a worker that dies bumps webserver_worker_restarts_total and its worker's restarts", async () => {
  await using server = await startServer([
    "--quiet",
    "--workers",
    "2",
    "--admin",
    "0",
    "--app",
    "tests/fixtures/apps/faults.ts",
  ]);
  const admin = await server.adminUrl();
  assert.equal(sampleValue(await metrics(admin), "webserver_worker_restarts_total"), 0);
  assert.equal((await request(server.port, get("/exit-now"))).status, 500);
  const after = await until(admin, "a restart counted", (s) => s.workers.some((w) => w.restarts === 1));
  assert.equal(after.workers.length, 2);
  assert.equal(sampleValue(await metrics(admin), "webserver_worker_restarts_total"), 1);
  assert.equal(sampleValue(await metrics(admin), "webserver_requests_total", { code: "500" }), 1);
});

Deno.test("/healthz says ok while serving and 503 draining from SIGTERM until the last /sleep ends", async () => {
  await using server = await startServer(["--quiet", "--workers", "2", "--admin", "0"]);
  const admin = await server.adminUrl();
  assert.deepEqual(await fetchText(`${admin}healthz`), { status: 200, text: "ok\n", type: "text/plain;charset=UTF-8" });
  const sleeping = request(server.port, get("/sleep"));
  await until(admin, "the /sleep running", (s) => s.workers.some((w) => w.busy));
  server.kill("SIGTERM");
  const draining = await within(
    2000,
    "healthz turning 503",
    (async () => {
      for (;;) {
        const health = await fetchText(`${admin}healthz`);
        if (health.status === 503) return health;
        await delay(20);
      }
    })(),
  );
  assert.equal(draining.text, "draining\n");
  assert.equal((await stats(admin)).draining, true);
  assert.equal((await sleeping).status, 200, "the /sleep in flight completes");
  assert.equal((await server.exited()).code, 0);
});

Deno.test("the admin listener says where it is, warns when it is not on loopback, and is off by default", async () => {
  await using plain = await startServer(["--quiet", "--workers", "1"]);
  assert.ok(!plain.lines.some((line) => line.startsWith("Admin on")));

  await using exposed = await startServer(["--quiet", "--workers", "1", "--admin", "0.0.0.0:0"]);
  const admin = await exposed.adminUrl();
  assert.match(admin, /^http:\/\/0\.0\.0\.0:\d+\/$/);
  const warning = await exposed.waitForLine(/warning: the admin listener/);
  assert.match(warning, /0\.0\.0\.0 is not a loopback address/);
  const port = Number(admin.match(/:(\d+)\//)![1]);
  const page = await fetchText(`http://127.0.0.1:${port}/`);
  assert.equal(page.status, 200);
  assert.match(page.text, /^<!DOCTYPE html>/);
  // One self-contained file: nothing is loaded from elsewhere.
  assert.doesNotMatch(page.text, /<(?:script|link|img)[^>]+(?:src|href)=/i);
});
