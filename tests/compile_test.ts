// `deno task compile` builds ./webserver; this test builds it into a temporary folder and runs it.
// Deno downloads its `denort` runtime for compiling (or takes DENORT_BIN); where neither can be
// had, the test is skipped with the reason printed.
import assert from "node:assert/strict";
import { assertHello, PROJECT_ROOT, ResponseReader, send, ServerProcess, taskArgs } from "./_server.ts";
import { keyPair } from "./_tls.ts";

async function compileArgs(task: string, output: string, app?: string): Promise<string[]> {
  const args = (await taskArgs(task)).map((word) => word === "$APP" ? app! : word);
  const at = args.indexOf("--output");
  assert.ok(at !== -1, `The compile task names no --output: ${args.join(" ")}`);
  args[at + 1] = output;
  return args;
}

// The runtime is missing when Deno cannot download it or DENORT_BIN does not point to it.
const RUNTIME_MISSING = /denort|dl\.deno\.land|error sending request|dns error/i;

async function build(task = "compile", app?: string): Promise<{ binary: string } | { skip: string }> {
  const dir = await Deno.makeTempDir({ prefix: "webserver-compile-" });
  const binary = `${dir}/webserver`;
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: await compileArgs(task, binary, app),
    cwd: PROJECT_ROOT,
    env: { NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stderr);
  if (code === 0) return { binary };
  await Deno.remove(dir, { recursive: true });
  if (RUNTIME_MISSING.test(text)) {
    const cause = text.split("\n").find((l) => /Could not find denort|dns error|error sending request/.test(l));
    return { skip: `deno compile could not get its denort runtime: ${(cause ?? "download failed").trim()}` };
  }
  throw new Error(`deno compile failed:\n${text}`);
}

/** Runs a built binary on a free port from an empty folder, and waits until it listens. */
async function runElsewhere(binary: string, args: string[]): Promise<ServerProcess> {
  const child = new Deno.Command(binary, {
    args: ["--port", "0", ...args],
    cwd: await Deno.makeTempDir(),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const server = new ServerProcess(child);
  await server.listening();
  return server;
}

const built = await build();
if ("skip" in built) console.log(`Skipping the compiled binary test: ${built.skip}. Set DENORT_BIN to run it.`);

Deno.test({
  name: "the compiled ./webserver serves the embedded pages with the pool and shuts down on SIGTERM",
  ignore: "skip" in built,
  async fn() {
    if ("skip" in built) return;
    // Run it from an unrelated folder: the workers and static/ must come from inside the binary.
    await using server = await runElsewhere(built.binary, ["--workers", "2"]);
    const port = server.port;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const reader = new ResponseReader(conn);
    await send(conn, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
    assertHello((await reader.read())?.text);
    assert.equal((await reader.read())?.status, 404);
    conn.close();
    server.kill("SIGTERM");
    assert.equal((await server.exited()).code, 0, server.output());
    assert.equal(server.lines.filter((l) => /^Shutting down worker \d$/.test(l)).length, 2);

    const bad = await new Deno.Command(built.binary, { args: ["--workers", "0"], stderr: "piped" }).output();
    assert.equal(bad.code, 2);
    assert.match(new TextDecoder().decode(bad.stderr), /Invalid --workers/);
  },
});

Deno.test({
  name: "the compiled ./webserver serves HTTPS, and two of them share a port with --reuse-port",
  ignore: "skip" in built,
  async fn() {
    if ("skip" in built) return;
    const dir = await Deno.makeTempDir({ prefix: "webserver-compile-tls-" });
    try {
      const pair = await keyPair(dir, "compile", "IP:127.0.0.1");
      const tls = ["--workers", "1", "--cert", pair.cert, "--key", pair.key, "--reuse-port"];
      await using first = await runElsewhere(built.binary, tls);
      assert.match(first.lines.find((line) => line.startsWith("Listening on"))!, /^Listening on https:\/\//);
      await using second = await runElsewhere(built.binary, [...tls, "--port", String(first.port)]);
      assert.equal(second.port, first.port);
      const conn = await Deno.connectTls({ hostname: "127.0.0.1", port: first.port, caCerts: [pair.pem] });
      const reader = new ResponseReader(conn);
      await send(conn, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
      assertHello((await reader.read())?.text);
      conn.close();
      for (const server of [first, second]) {
        server.kill("SIGTERM");
        assert.equal((await server.exited()).code, 0, server.output());
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// `APP=… deno task compile:app`: the app inside the binary, and `--app` baked in.
const APP = "tests/fixtures/apps/echo.ts";
const builtWithApp = "skip" in built ? built : await build("compile:app", APP);

Deno.test({
  name: "deno task compile:app embeds the app: the binary serves it from a folder where the app is not",
  ignore: "skip" in builtWithApp,
  async fn() {
    if ("skip" in builtWithApp) return;
    await using server = await runElsewhere(builtWithApp.binary, ["--workers", "1"]);
    const port = server.port;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const reader = new ResponseReader(conn);
    await send(conn, "GET /text HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal((await reader.read())?.text, "héllo wörld");
    conn.close();
    server.kill("SIGTERM");
    assert.equal((await server.exited()).code, 0, server.output());
  },
});
