/**
 * `deno task bench`: this server against `Deno.serve` in one isolate and
 * `deno serve --parallel`, on loopback, driven by `wrk`, in three scenarios.
 * The sync one serves `bench/app.ts`; the async one serves
 * `bench/async_app.ts` (awaited timers, CPU beside them, event streams); the
 * TLS one compares this server's built-in routes over HTTPS with `Deno.serve`
 * over HTTPS, with a key pair `openssl` makes for the run (skipped, with the
 * reason, without `openssl`).
 * Prints a table for each, and writes them as JSON and Markdown, with an SVG
 * bar chart of the sync one, under `bench/out/` (untracked), or under the
 * committed `bench/results/` with `BENCH_UPDATE=1`. `BENCH_ONLY=sync`,
 * `BENCH_ONLY=async` or `BENCH_ONLY=tls` runs one scenario; `BENCH_SHORT=1`
 * makes each run shorter (a quick look, noisier); `BENCH_WEBSERVER_FLAGS`
 * adds flags to this server's command line in the async one. A tool, not a
 * test: it asserts nothing.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
// The committed figures are replaced only on request; a run otherwise leaves them as they are.
const RESULTS = `${ROOT}bench/${Deno.env.get("BENCH_UPDATE") === "1" ? "results" : "out"}`;
// Where the TLS scenario makes its key pair, in a folder it removes: untracked, and already writable by the task.
const SCRATCH = `${ROOT}bench/out`;
const WORKERS = 2;
// A short run: about a third of the time, for a quick look while working.
const SHORT = Deno.env.get("BENCH_SHORT") === "1";
// Each wrk run; long enough to settle, short enough for the whole bench to take about four and a half minutes.
const RUN_SECONDS = SHORT ? 2 : 5;
const MIXED_SECONDS = SHORT ? 4 : 10;
// In the mixed run, when the /sleep loop starts: once wrk's clients have connected.
const MIXED_SLEEP_AFTER_MS = 500;

// The async scenario. `deno serve --parallel` gets as many isolates as this server's default workers.
const ASYNC_JOBS = 4;
// Enough clients to keep a server busy through the 20 ms waits of /io, as the sync scenario's 50 do for /.
const IO_CONNECTIONS = 100;
// Far more clients than threads: what an event loop handles and a thread per request does not.
const MANY_CONNECTIONS = 1000;
// Two /spin requests per core at any moment: the CPU is always busy beside the /io traffic.
const SPIN_CONNECTIONS = 4;
// Many long-lived responses open together; 500 is well within the default file limits.
const STREAMS = 500;
// As bench/async_app.ts sends.
const SSE_EVENTS = 20;
// A stream lasts about 2 s when served at once; at 30 s most of them are stuck, not slow.
const STREAMS_GIVE_UP_MS = 30_000;
// Longer than any wait we measure, so a slow answer counts in the latency instead of as an error.
const WRK_TIMEOUT = "10s";
// Four samples a second catch the peak of a 5 s run; each costs a cat process, a few milliseconds.
const RSS_SAMPLE_MS = 250;
// A server is idle again when one /io answers within this; a backlog makes it far slower.
const IDLE_IO_MS = 200;
// How long to wait for leftovers of the previous run (queued requests of closed connections) to clear.
const SETTLE_MAX_MS = 15_000;

interface ServerSpec {
  name: string;
  args: string[];
  env?: Record<string, string>;
  /** Whether it serves `/cpu` (the built-in routes do not). */
  cpu?: false;
}

// This server, quiet, with its default worker count unless the flags say otherwise. Deno's flags as
// the start task has them (--unstable-net, so BENCH_WEBSERVER_FLAGS may hold --reuse-port).
function webserverCommand(...flags: string[]): string[] {
  return [
    "run",
    "--unstable-net",
    "--allow-net",
    "--allow-read",
    "--allow-env",
    "--allow-sys=systemMemoryInfo",
    "main.ts",
    "--quiet",
    ...flags,
  ];
}

// This server, quiet, with `workers` workers and any further flags.
function webserverArgs(workers: number, ...flags: string[]): string[] {
  return webserverCommand("--workers", String(workers), ...flags);
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
  /** Answers with a status other than 2xx or 3xx. */
  non2xx: number;
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
  const non2xx = Number(text.match(/Non-2xx or 3xx responses:\s+(\d+)/)?.[1] ?? 0);
  return { rps, p99Ms: p99 ? ms(p99[1], p99[2]) : NaN, maxMs: max ? ms(max[1], max[2]) : NaN, errors, non2xx };
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

// `client`: for https, one that trusts the run's certificate.
async function waitUntilServing(url: string, client?: Deno.HttpClient): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      // A server that accepts but never answers must not hold this past the deadline.
      const response = await fetch(url, { client, signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) });
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

interface Started {
  child: Deno.ChildProcess;
  port: number;
  base: string;
}

// Starts a server on a free loopback port; the caller kills it.
function start(spec: ServerSpec, stdout: "null" | "piped" = "null"): Started {
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
    stdout,
    stderr: "null",
  }).spawn();
  return { child, port, base: `http://127.0.0.1:${port}` };
}

async function measure(spec: ServerSpec): Promise<Row> {
  const { child, base } = start(spec);
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

interface AsyncRow {
  server: string;
  ioRps: number;
  ioP99Ms: number;
  manyRps: number;
  /** At 1000 connections: wrk's socket errors and timeouts, plus answers that were not 2xx or 3xx. */
  manyErrors: number;
  manyRssMb: number;
  mixedIoRps: number;
  mixedIoP99Ms: number;
  mixedSpinRps: number;
  /** Errors of the other runs, for a sanity check: fast 503s would flatter req/s. */
  ioErrors: number;
  mixedErrors: number;
  /** Streams that got all their events, of STREAMS. */
  streamsDone: number;
  /** Streams still open when we gave up. */
  streamsUnfinished: number;
  /** From the first connect until the last stream ended; null when some were unfinished. */
  streamsMs: number | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function asyncServers(webserverFlags: string[]): ServerSpec[] {
  const flags = webserverFlags.length > 0 ? `, ${webserverFlags.join(" ")}` : "";
  return [
    {
      name: `webserver (pool, --app, default workers${flags})`,
      args: webserverCommand("--app", "bench/async_app.ts", ...webserverFlags),
    },
    { name: "Deno.serve (1 isolate)", args: ["serve", "--allow-read", "bench/async_app.ts"] },
    {
      name: `deno serve --parallel (${ASYNC_JOBS})`,
      args: ["serve", "--parallel", "--allow-read", "bench/async_app.ts"],
      env: { DENO_JOBS: String(ASYNC_JOBS) },
    },
  ];
}

// The peak resident memory of a process while `run` is pending.
async function peakRssDuring<T>(pid: number, run: Promise<T>): Promise<[T, number]> {
  let done = false;
  let peak = 0;
  const sampling = (async () => {
    while (!done) {
      peak = Math.max(peak, await rssMb(pid));
      await sleep(RSS_SAMPLE_MS);
    }
  })();
  try {
    return [await run, peak];
  } finally {
    done = true;
    await sampling;
  }
}

// Waits until one /io answers promptly: a server still working through the previous run's
// requests (whose clients have gone) would otherwise charge that work to the next run.
async function settle(base: string, name: string): Promise<void> {
  const started = performance.now();
  while (performance.now() - started < SETTLE_MAX_MS) {
    const sent = performance.now();
    try {
      const response = await fetch(`${base}/io`, { signal: AbortSignal.timeout(SETTLE_MAX_MS) });
      await response.body?.cancel();
      if (response.ok && performance.now() - sent < IDLE_IO_MS) {
        const waited = performance.now() - started;
        if (waited > 1000) console.error(`  ${name}: ${(waited / 1000).toFixed(1)} s until idle again`);
        return;
      }
    } catch {
      // refused or timed out: still busy
    }
    await sleep(100);
  }
  console.error(`  ${name}: still busy after ${SETTLE_MAX_MS / 1000} s; measuring anyway`);
}

interface StreamsResult {
  done: number;
  unfinished: number;
  ms: number | null;
}

// STREAMS raw connections at once, each asking for /sse and reading to the end. Raw, so nothing
// in between pools, limits or buffers them. Every wait ends by STREAMS_GIVE_UP_MS: then the
// connections still open are closed, which ends their pending reads and writes.
async function streams(port: number): Promise<StreamsResult> {
  const request = new TextEncoder().encode("GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  const open = new Set<Deno.Conn>();
  let gaveUp = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<null>((resolve) => {
    timer = setTimeout(() => {
      gaveUp = true;
      for (const conn of open) conn.close();
      open.clear();
      resolve(null);
    }, STREAMS_GIVE_UP_MS);
  });
  const started = performance.now();
  // How many events one stream got, and when it ended (null: still open when we gave up).
  const one = async (): Promise<{ events: number; endedAt: number | null }> => {
    let text = "";
    const connecting = Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const conn = await Promise.race([connecting, deadline]);
      if (conn === null) {
        connecting.then((late) => late.close(), () => {});
        return { events: 0, endedAt: null };
      }
      open.add(conn);
      try {
        for (let written = 0; written < request.length;) written += await conn.write(request.subarray(written));
        const decoder = new TextDecoder();
        const buffer = new Uint8Array(16 * 1024);
        for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
          text += decoder.decode(buffer.subarray(0, n), { stream: true });
        }
      } finally {
        if (open.delete(conn)) conn.close();
      }
    } catch {
      // refused, reset, or closed by the deadline: it ended with what it got
    }
    return { events: text.match(/data:/g)?.length ?? 0, endedAt: gaveUp ? null : performance.now() };
  };
  const results = await Promise.all(Array.from({ length: STREAMS }, one));
  clearTimeout(timer);
  const unfinished = results.filter((r) => r.endedAt === null).length;
  return {
    done: results.filter((r) => r.events >= SSE_EVENTS).length,
    unfinished,
    ms: unfinished > 0 ? null : Math.max(...results.map((r) => r.endedAt!)) - started,
  };
}

async function measureAsync(spec: ServerSpec): Promise<AsyncRow> {
  // Piped, to read the worker count (and how many requests each takes at a time) from this server's start-up line.
  const { child, port, base } = start(spec, "piped");
  let banner = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) if (banner.length < 4096) banner += decoder.decode(chunk, { stream: true });
  })().catch(() => {});
  try {
    await waitUntilServing(`${base}/io`);
    await wrk(`${base}/io`, 50, 2); // warm-up
    await settle(base, spec.name);
    const io = await wrk(`${base}/io`, IO_CONNECTIONS, RUN_SECONDS, ["--timeout", WRK_TIMEOUT]);
    await settle(base, spec.name);
    const [many, manyRssMb] = await peakRssDuring(
      child.pid,
      wrk(`${base}/io`, MANY_CONNECTIONS, RUN_SECONDS, ["--timeout", WRK_TIMEOUT]),
    );
    await settle(base, spec.name);
    // Both loops start together and run as long: every /io request has /spin work beside it.
    const [mixedIo, mixedSpin] = await Promise.all([
      wrk(`${base}/io`, IO_CONNECTIONS, MIXED_SECONDS, ["--timeout", WRK_TIMEOUT]),
      wrk(`${base}/spin`, SPIN_CONNECTIONS, MIXED_SECONDS, ["--timeout", WRK_TIMEOUT]),
    ]);
    await settle(base, spec.name);
    const sse = await streams(port);
    // "Listening on <url> with 4 workers, ...": the rest of the line, as this server words it.
    const workers = banner.match(/ with (\d+ workers?\b[^\r\n]*)/)?.[1];
    return {
      server: workers ? spec.name.replace("default workers", workers) : spec.name,
      ioRps: Math.round(io.rps),
      ioP99Ms: io.p99Ms,
      manyRps: Math.round(many.rps),
      manyErrors: many.errors + many.non2xx,
      manyRssMb,
      mixedIoRps: Math.round(mixedIo.rps),
      mixedIoP99Ms: mixedIo.p99Ms,
      mixedSpinRps: Math.round(mixedSpin.rps * 10) / 10,
      ioErrors: io.errors + io.non2xx,
      mixedErrors: mixedIo.errors + mixedIo.non2xx + mixedSpin.errors + mixedSpin.non2xx,
      streamsDone: sse.done,
      streamsUnfinished: sse.unfinished,
      streamsMs: sse.ms === null ? null : Math.round(sse.ms),
    };
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await reading;
  }
}

interface TlsRow {
  server: string;
  keepAliveRps: number;
  closeRps: number;
  /** Socket errors, timeouts and non-2xx answers of both runs: failed handshakes would flatter req/s. */
  errors: number;
}

interface KeyPair {
  certFile: string;
  keyFile: string;
  /** The certificate itself, which the bench's own requests trust. */
  cert: string;
}

// A P-256 key and a self-signed certificate for 127.0.0.1, valid for two days, made in `dir`.
// Returns why they could not be made instead when openssl is missing or fails.
async function makeKeyPair(dir: string): Promise<KeyPair | string> {
  const certFile = `${dir}/cert.pem`;
  const keyFile = `${dir}/key.pem`;
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        // Not a CA (req -x509 makes one by default), or fetch refuses it as a server's certificate.
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-keyout",
        keyFile,
        "-out",
        certFile,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return "openssl is not installed (on Debian or Ubuntu: apt-get update && apt-get install -y openssl)";
    }
    throw error;
  }
  if (!output.success) {
    const said = new TextDecoder().decode(output.stderr).trim().split("\n").at(-1);
    return `openssl could not make a key pair (exit ${output.code}${said ? `: ${said}` : ""})`;
  }
  return { certFile, keyFile, cert: await Deno.readTextFile(certFile) };
}

// Deno.serve with the certificate and key files given as its first two arguments, on bench/app.ts as
// the sync scenario's Deno.serve (`deno serve` has no TLS options). start() appends `--port N`.
function denoServeTlsProgram(): string {
  return `import app from ${JSON.stringify(new URL("app.ts", import.meta.url).href)};
const [cert, key] = Deno.args;
Deno.serve({
  hostname: "127.0.0.1",
  port: Number(Deno.args.at(-1)),
  cert: Deno.readTextFileSync(cert),
  key: Deno.readTextFileSync(key),
  onListen() {},
}, app.fetch);
`;
}

// The TLS scenario's servers: this server on its built-in routes, as in the sync scenario, and
// Deno.serve, both with the run's key pair. The program of the second goes beside the key pair.
async function tlsServers(dir: string, pair: KeyPair): Promise<ServerSpec[]> {
  const program = `${dir}/deno_serve_tls.ts`;
  await Deno.writeTextFile(program, denoServeTlsProgram());
  return [
    {
      name: "webserver (built-in routes, --cert/--key)",
      args: webserverArgs(WORKERS, "--cert", pair.certFile, "--key", pair.keyFile),
    },
    {
      name: "Deno.serve (1 isolate, cert/key)",
      args: ["run", "--allow-net=127.0.0.1", "--allow-read", program, pair.certFile, pair.keyFile],
    },
  ];
}

async function measureTls(spec: ServerSpec, pair: KeyPair): Promise<TlsRow> {
  const { child, port } = start(spec);
  const url = `https://127.0.0.1:${port}/`;
  // wrk checks no certificate; fetch does, so the readiness check trusts this one.
  const client = Deno.createHttpClient({ caCerts: [pair.cert] });
  try {
    await waitUntilServing(url, client);
    await wrk(url, 50, 2); // warm-up
    const keepAlive = await wrk(url, 50, RUN_SECONDS);
    // wrk reconnects after every answer and resumes the TLS session of the connection before, as
    // browsers do: a full handshake for each of the 50 first connections, a resumed one for the rest.
    const close = await wrk(url, 50, RUN_SECONDS, ["-H", "Connection: close"]);
    return {
      server: spec.name,
      keepAliveRps: Math.round(keepAlive.rps),
      closeRps: Math.round(close.rps),
      errors: keepAlive.errors + keepAlive.non2xx + close.errors + close.non2xx,
    };
  } finally {
    client.close();
    child.kill("SIGKILL");
    await child.status;
  }
}

function ratio(value: number, base: number): string {
  return base > 0 ? `${(value / base).toFixed(2)}×` : "–";
}

// The row every ratio is taken against.
function baseline<T extends { server: string }>(rows: T[]): T {
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

function milliseconds(value: number): string {
  return Number.isNaN(value) ? "–" : `${value.toFixed(1)} ms`;
}

function asyncTable(rows: AsyncRow[]): string {
  const base = baseline(rows);
  const lines = [
    "| Server | `/io` req/s (100 conns) | `/io` p99 | `/io` req/s (1000 conns) | errors | RSS peak (1000 conns) | " +
    `mixed \`/io\` req/s | mixed \`/io\` p99 | mixed \`/spin\` req/s | ${STREAMS} streams done | streams time |`,
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  const versus = (row: AsyncRow, key: keyof AsyncRow) =>
    row === base ? `${row[key]}` : `${row[key]} (${ratio(row[key] as number, base[key] as number)})`;
  for (const row of rows) {
    const cells = [
      row.server,
      versus(row, "ioRps"),
      milliseconds(row.ioP99Ms),
      versus(row, "manyRps"),
      String(row.manyErrors),
      `${row.manyRssMb} MB`,
      versus(row, "mixedIoRps"),
      milliseconds(row.mixedIoP99Ms),
      versus(row, "mixedSpinRps"),
      `${row.streamsDone}/${STREAMS}`,
      row.streamsMs === null
        ? `> ${STREAMS_GIVE_UP_MS / 1000} s (${row.streamsUnfinished} unfinished)`
        : `${(row.streamsMs / 1000).toFixed(2)} s`,
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

function tlsTable(rows: TlsRow[]): string {
  const base = baseline(rows);
  const lines = [
    "| Server | keep-alive `GET /` req/s | `Connection: close` req/s (resumed handshake each) | errors |",
    "| --- | --- | --- | --- |",
  ];
  const versus = (row: TlsRow, key: "keepAliveRps" | "closeRps") =>
    row === base ? `${row[key]}` : `${row[key]} (${ratio(row[key], base[key])})`;
  for (const row of rows) {
    lines.push(`| ${row.server} | ${versus(row, "keepAliveRps")} | ${versus(row, "closeRps")} | ${row.errors} |`);
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
  const only = Deno.env.get("BENCH_ONLY");
  if (only !== undefined && only !== "sync" && only !== "async" && only !== "tls") {
    console.error(`bench: BENCH_ONLY is "${only}"; it takes sync, async or tls`);
    return 2;
  }
  const runs = (scenario: string) => only === undefined || only === scenario;
  const webserverFlags = (Deno.env.get("BENCH_WEBSERVER_FLAGS") ?? "").split(/\s+/).filter((flag) => flag !== "");
  const machine =
    `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`;
  const date = new Date().toISOString().slice(0, 10);
  const parts: string[] = [];
  const results: Record<string, unknown> = { date, machine };
  const rows: Row[] = [];
  if (runs("sync")) {
    for (const spec of SERVERS) {
      console.error(`Measuring ${spec.name} ...`);
      rows.push(await measure(spec));
    }
    const idle4 = await idleRssWithFourWorkers();
    parts.push(
      `Measured ${date} on ${machine}; ${WORKERS} workers; wrk -t1, 50 connections (20 for mixed), ` +
        `ratios against Deno.serve in the same run.\n\n${table(rows)}\n\n` +
        `webserver with the default 4 workers, idle: ${idle4} MB resident.`,
    );
    Object.assign(results, { workers: WORKERS, rows, idleRssFourWorkersMb: idle4 });
  }
  if (runs("async")) {
    const asyncRows: AsyncRow[] = [];
    for (const spec of asyncServers(webserverFlags)) {
      console.error(`Measuring ${spec.name} (async) ...`);
      asyncRows.push(await measureAsync(spec));
    }
    parts.push(
      `${only === "async" ? `Measured ${date} on ${machine}. ` : ""}Async scenario, \`bench/async_app.ts\`: ` +
        `\`/io\` awaits 20 ms, \`/spin\` burns 50 ms of CPU, \`/sse\` sends ${SSE_EVENTS} events 100 ms apart. ` +
        `webserver at its default worker count, \`deno serve --parallel\` with ` +
        `DENO_JOBS=${ASYNC_JOBS}; wrk -t1, ${RUN_SECONDS} s runs; mixed: \`/io\` at ${IO_CONNECTIONS} connections ` +
        `beside \`/spin\` at ${SPIN_CONNECTIONS} for ${MIXED_SECONDS} s; errors: socket errors, timeouts and ` +
        `non-2xx answers; streams: ${STREAMS} raw connections opened at once, time from the first connect until ` +
        `the last stream ended; ratios against Deno.serve in the same run.\n\n${asyncTable(asyncRows)}`,
    );
    results.async = asyncRows;
  }
  if (runs("tls")) {
    await Deno.mkdir(SCRATCH, { recursive: true });
    const dir = await Deno.makeTempDir({ dir: SCRATCH, prefix: "tls-" });
    try {
      const pair = await makeKeyPair(dir);
      if (typeof pair === "string") {
        console.error(`bench: skipping the TLS scenario: ${pair}`);
        // Alone, it leaves the figures of the last run as they are.
        if (only === "tls") return 1;
        parts.push(`TLS scenario skipped: ${pair}.`);
        results.tls = { skipped: pair };
      } else {
        const tlsRows: TlsRow[] = [];
        for (const spec of await tlsServers(dir, pair)) {
          console.error(`Measuring ${spec.name} (TLS) ...`);
          tlsRows.push(await measureTls(spec, pair));
        }
        parts.push(
          `${only === "tls" ? `Measured ${date} on ${machine}. ` : ""}TLS scenario: HTTPS with a P-256 key and a ` +
            `self-signed certificate made by openssl for the run; webserver on its built-in routes with ${WORKERS} ` +
            `workers and \`--cert\`/\`--key\`, \`Deno.serve\` on \`bench/app.ts\` with the same pair (its \`cert\` ` +
            `and \`key\` options); wrk -t1, 50 connections, ${RUN_SECONDS} s runs; \`Connection: close\` makes a TLS ` +
            `handshake per request, which wrk resumes from its previous connection's session (full handshakes only ` +
            `for the first 50); errors: socket errors, timeouts and non-2xx answers of both runs; ratios against ` +
            `Deno.serve in the same run.\n\n${tlsTable(tlsRows)}`,
        );
        results.tls = tlsRows;
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  const markdown = parts.join("\n\n");
  await Deno.mkdir(RESULTS, { recursive: true });
  await Deno.writeTextFile(`${RESULTS}/latest.json`, JSON.stringify(results, null, 2) + "\n");
  await Deno.writeTextFile(`${RESULTS}/latest.svg`, svg(rows));
  await Deno.writeTextFile(`${RESULTS}/latest.md`, markdown + "\n");
  console.log(markdown);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
