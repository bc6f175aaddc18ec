/**
 * `deno task bench`: this server against `Deno.serve` in one isolate and
 * `deno serve --parallel`, all serving `bench/app.ts` on loopback, driven by
 * `wrk`. Prints one table, and writes it as JSON and an SVG bar chart under
 * `bench/results/`. A tool, not a test: it asserts nothing.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const RESULTS = `${ROOT}bench/results`;
const WORKERS = 2;
// Each wrk run; long enough to settle, short enough for the whole bench to take about two minutes.
const RUN_SECONDS = 5;
const MIXED_SECONDS = 10;
// In the mixed run, when the /sleep loop starts: once wrk's clients have connected.
const MIXED_SLEEP_AFTER_MS = 500;

interface ServerSpec {
  name: string;
  args: string[];
  env?: Record<string, string>;
  /** Whether it serves `/cpu` (the built-in routes do not). */
  cpu?: false;
}

// This server, quiet, with `workers` workers and any further flags.
function webserverArgs(workers: number, ...flags: string[]): string[] {
  return [
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-env",
    "main.ts",
    "--quiet",
    "--workers",
    String(workers),
    ...flags,
  ];
}

const SERVERS: ServerSpec[] = [
  { name: "webserver (pool, --app)", args: webserverArgs(WORKERS, "--app", "bench/app.ts") },
  // The same server on its built-in routes: `/` and `/sleep` without Request and Response objects.
  { name: "webserver (built-in routes)", args: webserverArgs(WORKERS), cpu: false },
  { name: "Deno.serve (1 isolate)", args: ["serve", "--allow-read", "bench/app.ts"] },
  {
    name: `deno serve --parallel (${WORKERS})`,
    args: ["serve", "--parallel", "--allow-read", "bench/app.ts"],
    env: { DENO_JOBS: String(WORKERS) },
  },
];

interface Row {
  server: string;
  keepAliveRps: number;
  closeRps: number;
  /** Absent for a server without `/cpu`. */
  cpuRps: number | null;
  mixedP99Ms: number;
  mixedMaxMs: number;
  mixedErrors: number;
  idleRssMb: number;
  loadRssMb: number;
}

interface WrkResult {
  rps: number;
  p99Ms: number;
  maxMs: number;
  /** Requests that got no answer within wrk's timeout, or failed. */
  errors: number;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

function ms(value: string, unit: string): number {
  return Number(value) * ({ us: 0.001, ms: 1, s: 1000, m: 60_000 } as Record<string, number>)[unit];
}

async function wrk(url: string, connections: number, seconds: number, extra: string[] = []): Promise<WrkResult> {
  const { stdout } = await new Deno.Command("wrk", {
    args: ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", ...extra, url],
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(stdout);
  const rps = Number(text.match(/Requests\/sec:\s+([\d.]+)/)?.[1] ?? 0);
  const p99 = text.match(/^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m);
  const max = text.match(/Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)/);
  const socket = text.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const errors = socket ? socket.slice(1).reduce((n, v) => n + Number(v), 0) : 0;
  return { rps, p99Ms: p99 ? ms(p99[1], p99[2]) : NaN, maxMs: max ? ms(max[1], max[2]) : NaN, errors };
}

// Resident memory of a process and its threads, in MB.
async function rssMb(pid: number): Promise<number> {
  // Deno refuses to read /proc/<pid> without --allow-all; cat reads it under --allow-run.
  const { stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped", stderr: "null" })
    .output();
  const status = new TextDecoder().decode(stdout);
  const kb = Number(status.match(/VmRSS:\s+(\d+) kB/)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

async function waitUntilServing(url: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      await response.body?.cancel();
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Nothing answered at ${url}`);
}

// Resident memory of this server with the book's 4 workers, idle after start-up.
async function idleRssWithFourWorkers(): Promise<number> {
  const port = freePort();
  const child = new Deno.Command("deno", {
    args: webserverArgs(4, "--port", String(port)),
    cwd: ROOT,
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitUntilServing(`http://127.0.0.1:${port}/`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return await rssMb(child.pid);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

async function measure(spec: ServerSpec): Promise<Row> {
  const port = freePort();
  const args = spec.args[0] === "run" ? [...spec.args, "--port", String(port)] : [
    spec.args[0],
    "--port",
    String(port),
    "--host",
    "127.0.0.1",
    ...spec.args.slice(1),
  ];
  const child = new Deno.Command("deno", {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...spec.env },
    stdout: "null",
    stderr: "null",
  }).spawn();
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitUntilServing(`${base}/`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const idleRssMb = await rssMb(child.pid);
    await wrk(`${base}/`, 50, 2); // warm-up
    let loadRssMb = 0;
    const sampler = setInterval(async () => loadRssMb = Math.max(loadRssMb, await rssMb(child.pid)), 500);
    const keepAlive = await wrk(`${base}/`, 50, RUN_SECONDS);
    clearInterval(sampler);
    const close = await wrk(`${base}/`, 50, RUN_SECONDS, ["-H", "Connection: close"]);
    const cpu = spec.cpu === false ? null : await wrk(`${base}/cpu`, 50, RUN_SECONDS);
    // Mixed: 20 keep-alive clients ask for / while one blocking /sleep is always in flight.
    // The clients connect first, as browsers keep their connections open; the /sleep then
    // lands on a server (or isolate) that already holds some of them. (Were it first, a
    // server whose isolates accept in turn would take every client on a free isolate.)
    // A timeout longer than the sleep, so a stalled request counts in the latency instead of vanishing.
    const mixing = wrk(`${base}/`, 20, MIXED_SECONDS, ["--timeout", "10s"]);
    await new Promise((resolve) => setTimeout(resolve, MIXED_SLEEP_AFTER_MS));
    let done = false;
    mixing.finally(() => done = true);
    const sleeper = (async () => {
      while (!done) {
        try {
          await (await fetch(`${base}/sleep`)).body?.cancel();
        } catch {
          // the server may refuse while saturated; try again
        }
      }
    })();
    const mixed = await mixing;
    await sleeper;
    return {
      server: spec.name,
      keepAliveRps: Math.round(keepAlive.rps),
      closeRps: Math.round(close.rps),
      cpuRps: cpu && Math.round(cpu.rps),
      mixedP99Ms: mixed.p99Ms,
      mixedMaxMs: mixed.maxMs,
      mixedErrors: mixed.errors,
      idleRssMb,
      loadRssMb,
    };
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

function ratio(value: number, base: number): string {
  return base > 0 ? `${(value / base).toFixed(2)}×` : "–";
}

// The row every ratio is taken against.
function baseline(rows: Row[]): Row {
  return rows.find((row) => row.server.startsWith("Deno.serve"))!;
}

function table(rows: Row[]): string {
  const base = baseline(rows);
  const lines = [
    "| Server | keep-alive `GET /` req/s | `Connection: close` req/s | `/cpu` req/s | mixed `/` p99 | mixed `/` max | mixed errors | RSS idle | RSS load |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const row of rows) {
    const versus = row === base ? "" : " (RATIO)";
    lines.push(
      `| ${row.server} | ${row.keepAliveRps}${versus.replace("RATIO", ratio(row.keepAliveRps, base.keepAliveRps))} | ` +
        `${row.closeRps}${versus.replace("RATIO", ratio(row.closeRps, base.closeRps))} | ` +
        (row.cpuRps === null ? "– | " : `${row.cpuRps}${versus.replace("RATIO", ratio(row.cpuRps, base.cpuRps!))} | `) +
        `${row.mixedP99Ms.toFixed(1)} ms | ${
          row.mixedMaxMs.toFixed(1)
        } ms | ${row.mixedErrors} | ${row.idleRssMb} MB | ${row.loadRssMb} MB |`,
    );
  }
  return lines.join("\n");
}

function svg(rows: Row[]): string {
  const metrics: Array<[keyof Row, string]> = [["keepAliveRps", "keep-alive"], ["closeRps", "close"], [
    "cpuRps",
    "/cpu",
  ]];
  const colors = ["#2b6cb0", "#63b3ed", "#a0aec0", "#dd6b20"];
  const width = 640;
  const height = 300;
  const groupWidth = (width - 80) / metrics.length;
  const barWidth = groupWidth / (rows.length + 1);
  const parts: string[] = [];
  metrics.forEach(([key, label], m) => {
    const max = Math.max(...rows.map((r) => (r[key] as number | null) ?? 0), 1);
    rows.forEach((row, i) => {
      const value = row[key] as number | null;
      if (value === null) return;
      const h = (value / max) * (height - 90);
      const x = 60 + m * groupWidth + i * barWidth;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${(height - 40 - h).toFixed(1)}" width="${(barWidth - 4).toFixed(1)}" height="${
          h.toFixed(1)
        }" fill="${colors[i]}"/>`,
        `<text x="${(x + barWidth / 2 - 2).toFixed(1)}" y="${
          (height - 44 - h).toFixed(1)
        }" font-size="10" text-anchor="middle">${value}</text>`,
      );
    });
    parts.push(
      `<text x="${(60 + m * groupWidth + (rows.length * barWidth) / 2).toFixed(1)}" y="${
        height - 22
      }" font-size="12" text-anchor="middle">${label} req/s</text>`,
    );
  });
  rows.forEach((row, i) => {
    parts.push(
      `<rect x="${10 + (i % 2) * 320}" y="${6 + Math.floor(i / 2) * 18}" width="12" height="12" fill="${colors[i]}"/>`,
      `<text x="${26 + (i % 2) * 320}" y="${17 + Math.floor(i / 2) * 18}" font-size="12">${
        row.server.replace(/&/g, "&amp;").replace(/</g, "&lt;")
      }</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${parts.join("\n")}\n</svg>\n`;
}

async function main(): Promise<number> {
  const found = await new Deno.Command("wrk", { args: ["--version"], stdout: "null", stderr: "null" }).output()
    .then(() => true, () => false);
  if (!found) {
    console.error("bench: wrk is not installed. On Debian or Ubuntu: apt-get update && apt-get install -y wrk");
    return 1;
  }
  const rows: Row[] = [];
  for (const spec of SERVERS) {
    console.error(`Measuring ${spec.name} ...`);
    rows.push(await measure(spec));
  }
  const idle4 = await idleRssWithFourWorkers();
  const machine =
    `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`;
  const date = new Date().toISOString().slice(0, 10);
  const markdown = `Measured ${date} on ${machine}; ${WORKERS} workers; wrk -t1, 50 connections (20 for mixed), ` +
    `ratios against Deno.serve in the same run.\n\n${table(rows)}\n\n` +
    `webserver with the default 4 workers, idle: ${idle4} MB resident.`;
  await Deno.mkdir(RESULTS, { recursive: true });
  await Deno.writeTextFile(
    `${RESULTS}/latest.json`,
    JSON.stringify({ date, machine, workers: WORKERS, rows, idleRssFourWorkersMb: idle4 }, null, 2) + "\n",
  );
  await Deno.writeTextFile(`${RESULTS}/latest.svg`, svg(rows));
  await Deno.writeTextFile(`${RESULTS}/latest.md`, markdown + "\n");
  console.log(markdown);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
