// End to end, with the tools users run in front: two server processes behind nginx (the shipped
// deploy/nginx_site.conf) and behind HAProxy (deploy/haproxy.cfg), each with its ports changed to
// free ones, under steady wrk load for about 10 s while each instance in turn gets SIGTERM and is
// started again. Behind nginx, which retries on the other instance, no request fails. Behind
// HAProxy, which polls /healthz and does not retry, none fails with --drain-delay longer than the
// check interval, and some do without it: what --drain-delay is for.
import assert from "node:assert/strict";
import { findTool, PROJECT_ROOT, type ServerProcess, startServer } from "./_server.ts";
import { within } from "./_within.ts";

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const NGINX = findTool("nginx");
const HAPROXY = findTool("haproxy");
const WRK = findTool("wrk");
const missing = (tools: Record<string, string | undefined>) => {
  const absent = Object.entries(tools).filter(([, path]) => path === undefined).map(([name]) => name);
  if (absent.length > 0) {
    console.log(`Skipping: ${absent.join(", ")} not installed (.ci/run installs them with apt-get)`);
  }
  return absent.length > 0;
};

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Waits (bounded) until something accepts connections on `port`. */
async function accepting(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionRefused) || Date.now() > deadline) {
        throw new Error(`${what} not accepting on ${port}: ${error}`);
      }
      await delay(50);
    }
  }
}

/** `text` with every `from` replaced by `to`, failing when `from` is not there (the shipped file changed). */
function substitute(text: string, from: string, to: string): string {
  assert.ok(text.includes(from), `expected ${JSON.stringify(from)} in the shipped configuration`);
  return text.replaceAll(from, to);
}

interface Instance {
  port: number;
  admin: number;
  flags: string[];
  server: ServerProcess;
  /** Requests served by every process this instance has been, so far. */
  served: number[];
}

async function startInstance(port: number, admin: number, flags: string[]): Promise<ServerProcess> {
  const server = await startServer(["--port", String(port), "--admin", String(admin), "--workers", "2", ...flags]);
  assert.equal(server.port, port);
  return server;
}

const servedBy = (server: ServerProcess) => server.lines.filter((line) => /^GET \/ 200 /.test(line)).length;

/** SIGTERM each instance in turn, wait for its exit (status 0), start it again on its port, let it serve a second. */
async function rollingRestart(instances: Instance[]): Promise<void> {
  for (const instance of instances) {
    instance.server.kill("SIGTERM");
    assert.equal((await instance.server.exited()).code, 0, instance.server.output());
    instance.served.push(servedBy(instance.server));
    instance.server = await startInstance(instance.port, instance.admin, instance.flags);
    await delay(1000);
  }
}

interface WrkCounts {
  requests: number;
  failed: number;
  detail: string;
}

/** Runs wrk for `seconds` on `url` (keep-alive, 8 connections): requests and failures (non-2xx/3xx and socket errors). */
function load(url: string, seconds: number): Promise<WrkCounts> {
  const child = new Deno.Command(WRK!, {
    args: ["-t1", "-c8", `-d${seconds}s`, "--timeout", "5s", url],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return within((seconds + 20) * 1000, "wrk", child.output()).then(({ code, stdout, stderr }) => {
    const text = new TextDecoder().decode(stdout);
    assert.equal(code, 0, `wrk: ${text}${new TextDecoder().decode(stderr)}`);
    const requests = Number(text.match(/(\d+) requests in/)?.[1]);
    assert.ok(requests > 0, text);
    const non2xx = Number(text.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0);
    const socket = text.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
    const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
    return {
      requests,
      failed: non2xx + socketErrors,
      detail: `non-2xx ${non2xx}, ${socket?.[0] ?? "no socket errors"}`,
    };
  });
}

/** A folder for a proxy's configuration, logs and temporary files, removed by disposing it. */
async function proxyFolder(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "webserver-proxy-" });
  // nginx's workers may run as another user when the test runs as root: let them in.
  await Deno.chmod(path, 0o755);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

function spawnProxy(command: string, args: string[]): Deno.ChildProcess & AsyncDisposable {
  const child = new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  const output = child.output();
  return Object.assign(child, {
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await within(10_000, `${command} exiting`, output);
    },
  });
}

Deno.test({
  name: "behind nginx (deploy/nginx_site.conf), a rolling restart of both instances under load fails no request",
  ignore: missing({ nginx: NGINX, wrk: WRK }),
  async fn() {
    const [a, b, front] = [freePort(), freePort(), freePort()];
    const flags = ["--trust-proxy", "127.0.0.1"];
    const instances: Instance[] = [];
    for (const port of [a, b]) {
      const admin = freePort();
      instances.push({ port, admin, flags, server: await startInstance(port, admin, flags), served: [] });
    }
    try {
      await using folder = await proxyFolder();
      let site = await Deno.readTextFile(`${PROJECT_ROOT}deploy/nginx_site.conf`);
      site = substitute(site, "127.0.0.1:7878", `127.0.0.1:${a}`);
      site = substitute(site, "127.0.0.1:7879", `127.0.0.1:${b}`);
      site = substitute(site, "listen 80;", `listen 127.0.0.1:${front};`);
      await Deno.writeTextFile(`${folder.path}/site.conf`, site);
      const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .map((kind) => `${kind}_temp_path ${folder.path}/${kind};`).join(" ");
      await Deno.writeTextFile(
        `${folder.path}/nginx.conf`,
        `daemon off; worker_processes 1; pid ${folder.path}/nginx.pid; error_log ${folder.path}/error.log warn;\n` +
          `events { worker_connections 1024; }\n` +
          `http { access_log off; ${temp} include ${folder.path}/site.conf; }\n`,
      );
      await using _nginx = spawnProxy(NGINX!, ["-p", folder.path, "-c", `${folder.path}/nginx.conf`]);
      await accepting(front, "nginx");

      const run = load(`http://127.0.0.1:${front}/`, 10);
      await delay(1500);
      await rollingRestart(instances);
      const counts = await run;
      const log = await Deno.readTextFile(`${folder.path}/error.log`);
      console.log(
        `Through nginx during a rolling restart: ${counts.failed} failed of ${counts.requests} (${counts.detail})`,
      );
      assert.equal(counts.failed, 0, `${counts.detail}; nginx error log:\n${log}`);
      // Both first processes served, and the restarted first instance served again.
      for (const instance of instances) assert.ok(instance.served[0] > 0, `instance ${instance.port} served`);
      assert.ok(servedBy(instances[0].server) > 0, "the restarted instance serves through nginx again");
    } finally {
      for (const instance of instances) await instance.server[Symbol.asyncDispose]();
    }
  },
});

/** Failed and total requests through HAProxy during a rolling restart of instances run with `flags`. */
async function haproxyRollingRestart(flags: string[]): Promise<WrkCounts> {
  const [a, b, front, adminA, adminB] = [freePort(), freePort(), freePort(), freePort(), freePort()];
  const instances: Instance[] = [];
  try {
    for (const [port, admin] of [[a, adminA], [b, adminB]]) {
      instances.push({ port, admin, flags, server: await startInstance(port, admin, flags), served: [] });
    }
    await using folder = await proxyFolder();
    let config = await Deno.readTextFile(`${PROJECT_ROOT}deploy/haproxy.cfg`);
    config = substitute(config, "bind :80", `bind 127.0.0.1:${front}`);
    config = substitute(config, "127.0.0.1:7878 check port 9878", `127.0.0.1:${a} check port ${adminA}`);
    config = substitute(config, "127.0.0.1:7879 check port 9879", `127.0.0.1:${b} check port ${adminB}`);
    await Deno.writeTextFile(`${folder.path}/haproxy.cfg`, config);
    await using _haproxy = spawnProxy(HAPROXY!, ["-db", "-f", `${folder.path}/haproxy.cfg`]);
    await accepting(front, "haproxy");
    await delay(500); // a first health check of each instance

    const run = load(`http://127.0.0.1:${front}/`, 10);
    await delay(1500);
    await rollingRestart(instances);
    return await run;
  } finally {
    for (const instance of instances) await instance.server[Symbol.asyncDispose]();
  }
}

Deno.test({
  name:
    "behind HAProxy polling /healthz without retries, a rolling restart fails none with --drain-delay, some without",
  ignore: missing({ haproxy: HAPROXY, wrk: WRK }),
  async fn() {
    // The check interval is 200 ms and one failure takes an instance out; 1 s covers it with room.
    const drained = await haproxyRollingRestart(["--quiet", "--drain-delay", "1"]);
    const abrupt = await haproxyRollingRestart(["--quiet"]);
    console.log(
      `Through HAProxy during a rolling restart: with --drain-delay 1, ${drained.failed} failed of ` +
        `${drained.requests} (${drained.detail}); without, ${abrupt.failed} failed of ${abrupt.requests} (${abrupt.detail})`,
    );
    assert.equal(drained.failed, 0, drained.detail);
    assert.ok(abrupt.failed > 0, `without --drain-delay some requests fail (${abrupt.detail})`);
  },
});
