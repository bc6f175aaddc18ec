/**
 * The admin listener: a second port, answered by the main thread (never by
 * the pool, so it answers while every worker is blocked), with `/metrics`
 * (Prometheus text format 0.0.4, through `prom-client`), `/healthz`, a live
 * page of the pool at `/`, and the JSON that page reads each second at
 * `/stats`.
 *
 * @module
 */
import client from "npm:prom-client@15.1.3";
import type { PoolStats } from "../pool/mod.ts";
import { targetPath } from "../http/mod.ts";
import type { RequestLogEntry } from "./connection_state.ts";
import { ADMIN_PAGE } from "./admin_page.ts";
export { isLoopback } from "./loopback.ts";

// Request durations, in seconds: from a cached file (sub-millisecond) to a handler near its timeout.
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// The live page's window: one slot per second for the last minute.
const WINDOW_SECONDS = 60;
// The live page's latency buckets: upper bounds in milliseconds, each half again the last, from
// 0.1 ms to about 100 s; a quantile is reported as its bucket's upper bound (within 50%).
const LATENCY_BOUNDS_MS = Array.from({ length: 35 }, (_, i) => 0.1 * 1.5 ** i);

/** What the admin listener reads from the server it watches. */
export interface AdminSource {
  /** The pool's workers and queue now. */
  stats(): PoolStats;
  /** Open client connections now. */
  connections(): number;
  /** Whether the server has begun to shut down. */
  draining(): boolean;
}

/** One second of the live page's chart. */
export interface SecondSample {
  /** Seconds since the Unix epoch. */
  t: number;
  /** Requests finished in that second. */
  count: number;
  /** Median latency in milliseconds (a bucket's upper bound), `null` without requests. */
  p50: number | null;
  /** 99th percentile latency in milliseconds, likewise. */
  p99: number | null;
}

/**
 * Requests finished per second over the last minute, with latency
 * quantiles, from a fixed number of buckets per second (constant memory,
 * whatever the rate).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RecentRequests } from "./admin.ts";
 * const recent = new RecentRequests();
 * for (let i = 0; i < 99; i++) recent.record(1, 10_000);
 * recent.record(900, 10_000);
 * const [last] = recent.samples(10_500).slice(-1);
 * assert.equal(last.count, 100);
 * assert.ok(last.p50! >= 1 && last.p50! < 1.5);
 * assert.ok(last.p99! >= 1 && last.p99! < 1.5);
 * ```
 */
export class RecentRequests {
  readonly #seconds = new Float64Array(WINDOW_SECONDS).fill(-1);
  readonly #counts = Array.from({ length: WINDOW_SECONDS }, () => new Uint32Array(LATENCY_BOUNDS_MS.length + 1));

  /** Notes one request that took `ms`, finished at `nowMs` (milliseconds since the epoch). */
  record(ms: number, nowMs: number = Date.now()): void {
    const second = Math.floor(nowMs / 1000);
    const slot = second % WINDOW_SECONDS;
    if (this.#seconds[slot] !== second) {
      this.#seconds[slot] = second;
      this.#counts[slot].fill(0);
    }
    let bucket = 0;
    while (bucket < LATENCY_BOUNDS_MS.length && ms > LATENCY_BOUNDS_MS[bucket]) bucket++;
    this.#counts[slot][bucket]++;
  }

  /** The whole last minute: requests finished, and the latency quantiles over all of them. */
  minute(nowMs: number = Date.now()): { count: number; p50: number | null; p99: number | null } {
    const now = Math.floor(nowMs / 1000);
    const merged = new Uint32Array(LATENCY_BOUNDS_MS.length + 1);
    for (let slot = 0; slot < WINDOW_SECONDS; slot++) {
      if (this.#seconds[slot] <= now - WINDOW_SECONDS || this.#seconds[slot] > now) continue;
      const counts = this.#counts[slot];
      for (let i = 0; i < merged.length; i++) merged[i] += counts[i];
    }
    const count = merged.reduce((a, b) => a + b, 0);
    return { count, p50: quantile(merged, count, 0.5), p99: quantile(merged, count, 0.99) };
  }

  /** The last minute, oldest second first, up to the second of `nowMs`. */
  samples(nowMs: number = Date.now()): SecondSample[] {
    const now = Math.floor(nowMs / 1000);
    const out: SecondSample[] = [];
    for (let t = now - WINDOW_SECONDS + 1; t <= now; t++) {
      const slot = ((t % WINDOW_SECONDS) + WINDOW_SECONDS) % WINDOW_SECONDS;
      const counts = this.#seconds[slot] === t ? this.#counts[slot] : undefined;
      const count = counts ? counts.reduce((a, b) => a + b, 0) : 0;
      out.push({ t, count, p50: quantile(counts, count, 0.5), p99: quantile(counts, count, 0.99) });
    }
    return out;
  }
}

function quantile(counts: Uint32Array | undefined, total: number, q: number): number | null {
  if (!counts || total === 0) return null;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= rank) return Math.round((LATENCY_BOUNDS_MS[i] ?? Infinity) * 1000) / 1000;
  }
  return null;
}

/**
 * The server's metrics, counted in the main thread as each response ends, so
 * they are exact across all workers.
 */
export class Metrics {
  /** The registry `/metrics` renders. */
  readonly registry: client.Registry = new client.Registry();
  /** The last minute, for the live page. */
  readonly recent: RecentRequests = new RecentRequests();
  readonly #requests: client.Counter<"code">;
  readonly #byCode = new Map<number, ReturnType<client.Counter<"code">["labels"]>>();
  readonly #duration: client.Histogram;
  readonly #restarts: client.Counter;

  /**
   * Metrics of the server that `source` describes.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Metrics } from "./admin.ts";
   * const source = { stats: () => ({ workers: [], queued: 0, maxQueue: 8, stuckThreads: 0 }), connections: () => 1, draining: () => false };
   * const metrics = new Metrics(source);
   * metrics.observe({ method: "GET", target: "/", version: "HTTP/1.1", status: 200, bytes: 5, ms: 2, workerId: 0, remote: "::1" });
   * const text = await metrics.registry.metrics();
   * assert.match(text, /^webserver_requests_total\{code="200"\} 1$/m);
   * ```
   */
  constructor(source: AdminSource) {
    const registers = [this.registry];
    this.#requests = new client.Counter({
      name: "webserver_requests_total",
      help: "Requests answered, by status code (499: the client left before any answer)",
      labelNames: ["code"] as const,
      registers,
    });
    this.#duration = new client.Histogram({
      name: "webserver_request_duration_seconds",
      help: "Time from a request's arrival to its response's last byte",
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#restarts = new client.Counter({
      name: "webserver_worker_restarts_total",
      help: "Workers replaced because they died, got stuck or failed to start",
      registers,
    });
    // Read when scraped: one snapshot of the pool serves the gauges that come from it.
    let snapshot: PoolStats | undefined;
    const stats = () => snapshot ??= source.stats();
    const gauge = (name: string, help: string, read: () => number) =>
      new client.Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    gauge("webserver_requests_in_flight", "Requests the workers are running now", () => {
      return stats().workers.reduce((sum, worker) => sum + worker.inflight, 0);
    });
    gauge("webserver_queue_length", "Requests waiting for a worker", () => stats().queued);
    gauge("webserver_workers", "Workers ready to take requests", () => {
      return stats().workers.filter((worker) => worker.state === "ready").length;
    });
    gauge("webserver_workers_busy", "Workers running at least one request", () => {
      return stats().workers.filter((worker) => worker.inflight > 0).length;
    });
    gauge("webserver_connections_open", "Client connections open", () => source.connections());
    gauge("process_resident_memory_bytes", "Resident memory size in bytes", () => Deno.memoryUsage().rss);
    // The snapshot lives for one scrape.
    this.#afterScrape = () => snapshot = undefined;
  }

  readonly #afterScrape: () => void;

  /** Counts one finished request. */
  observe(entry: RequestLogEntry): void {
    let counter = this.#byCode.get(entry.status);
    if (counter === undefined) {
      counter = this.#requests.labels(String(entry.status));
      this.#byCode.set(entry.status, counter);
    }
    counter.inc();
    this.#duration.observe(entry.ms / 1000);
    this.recent.record(entry.ms);
  }

  /** Counts one worker replaced. */
  workerReplaced(): void {
    this.#restarts.inc();
  }

  /** The `/metrics` text. */
  async render(): Promise<string> {
    try {
      return await this.registry.metrics();
    } finally {
      this.#afterScrape();
    }
  }
}

/** What the live page reads each second from `/stats`. */
export interface AdminStats {
  /** Whether the server is draining. */
  draining: boolean;
  /** Open client connections. */
  connections: number;
  /** Requests waiting for a worker, and the bound. */
  queue: { length: number; max: number };
  /** Each worker; the oldest request as `METHOD /path` (no query string). */
  workers: Array<{
    id: number;
    state: string;
    busy: boolean;
    inflight: number;
    oldest: { request: string; ageMs: number } | null;
    served: number;
    restarts: number;
  }>;
  /** The last minute, a sample per second. */
  recent: SecondSample[];
  /** The last minute as a whole. */
  minute: { count: number; p50: number | null; p99: number | null };
}

/**
 * The `/stats` document: the pool now, and the last minute.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adminStats, RecentRequests } from "./admin.ts";
 * const source = {
 *   stats: () => ({ workers: [{ id: 0, state: "ready" as const, inflight: 1, served: 3, restarts: 0, oldest: { label: "GET /sleep?x=1", ageMs: 800 } }], queued: 0, maxQueue: 8, stuckThreads: 0 }),
 *   connections: () => 1,
 *   draining: () => false,
 * };
 * const stats = adminStats(source, new RecentRequests());
 * assert.deepEqual(stats.workers[0].oldest, { request: "GET /sleep", ageMs: 800 });
 * ```
 */
export function adminStats(source: AdminSource, recent: RecentRequests): AdminStats {
  const stats = source.stats();
  return {
    draining: source.draining(),
    connections: source.connections(),
    queue: { length: stats.queued, max: stats.maxQueue },
    workers: stats.workers.map((worker) => ({
      id: worker.id,
      state: worker.state,
      busy: worker.inflight > 0,
      inflight: worker.inflight,
      oldest: worker.oldest
        ? { request: describeLabel(worker.oldest.label), ageMs: Math.round(worker.oldest.ageMs) }
        : null,
      served: worker.served,
      restarts: worker.restarts,
    })),
    recent: recent.samples(),
    minute: recent.minute(),
  };
}

// `METHOD target` without the query string, which may carry secrets.
function describeLabel(label: string | undefined): string {
  if (label === undefined) return "-";
  const space = label.indexOf(" ");
  if (space === -1) return label;
  return `${label.slice(0, space)} ${targetPath(label.slice(space + 1))}`;
}

const NO_STORE: HeadersInit = { "cache-control": "no-store" };

/**
 * Answers one admin request.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adminHandler, Metrics } from "./admin.ts";
 * const source = { stats: () => ({ workers: [], queued: 0, maxQueue: 8, stuckThreads: 0 }), connections: () => 0, draining: () => true };
 * const handle = adminHandler(source, new Metrics(source));
 * const health = await handle(new Request("http://x/healthz"));
 * assert.equal(health.status, 503);
 * assert.equal(await health.text(), "draining\n");
 * ```
 */
export function adminHandler(source: AdminSource, metrics: Metrics): (request: Request) => Promise<Response> {
  return async (request) => {
    const { pathname } = new URL(request.url);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("405 Method Not Allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    switch (pathname) {
      case "/metrics":
        return new Response(await metrics.render(), {
          headers: { "content-type": metrics.registry.contentType, ...NO_STORE },
        });
      case "/healthz":
        return source.draining()
          ? new Response("draining\n", { status: 503, headers: NO_STORE })
          : new Response("ok\n", { headers: NO_STORE });
      case "/stats":
        return Response.json(adminStats(source, metrics.recent), { headers: NO_STORE });
      case "/":
        return new Response(ADMIN_PAGE, {
          headers: {
            "content-type": "text/html; charset=utf-8",
            // The page is one file: its own script and style, nothing from elsewhere.
            "content-security-policy":
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ...NO_STORE,
          },
        });
      default:
        return new Response("404 Not Found\n", { status: 404 });
    }
  };
}
