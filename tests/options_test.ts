import assert from "node:assert/strict";
import { DEFAULTS, FLAGS, parseCli, UsageError, workerMemoryFor } from "../server/options.ts";

const noEnv = () => undefined;

Deno.test("parseCli() gives the defaults for no flags and no environment", () => {
  assert.deepEqual(parseCli([], noEnv), { help: false, options: { ...DEFAULTS } });
  assert.equal(DEFAULTS.host, "127.0.0.1");
  assert.equal(DEFAULTS.port, 7878);
  assert.equal(DEFAULTS.workers, 4);
  assert.equal(DEFAULTS.concurrency, 256);
  assert.match(DEFAULTS.root, /static\/$/);
});

Deno.test("parseCli() reads every flag, in both --flag value and --flag=value forms", () => {
  const result = parseCli([
    "--host",
    "0.0.0.0",
    "--port=0",
    "--workers",
    "8",
    "--concurrency=16",
    "--worker-memory",
    "512",
    "--max-stuck-threads=3",
    "--root",
    "/tmp",
    "--max-requests=2",
    "--quiet",
    "--log-format",
    "json",
    "--admin=9100",
    "--trust-proxy",
    "10.0.0.0/8",
    "--cert",
    "c.pem",
    "--key=k.pem",
    "--reuse-port",
    "--drain-delay",
    "2.5",
    "--max-request-line",
    "100",
    "--max-header-bytes=200",
    "--max-header-count",
    "3",
    "--max-body",
    "0",
    "--header-timeout",
    "1.5",
    "--body-timeout=2",
    "--keepalive-timeout",
    "0.25",
    "--handler-timeout",
    "60",
    "--max-connections",
    "7",
    "--queue",
    "9",
    "--app",
    "app.ts",
    "--dotfiles",
    "--dir-listing",
    "--cache-control",
    "public, max-age=60",
  ], noEnv);
  assert.deepEqual(result, {
    help: false,
    options: {
      host: "0.0.0.0",
      port: 0,
      workers: 8,
      concurrency: 16,
      workerMemoryMb: 512,
      maxStuckThreads: 3,
      root: "/tmp",
      maxRequests: 2,
      quiet: true,
      logFormat: "json",
      admin: { host: "127.0.0.1", port: 9100 },
      trustProxy: ["10.0.0.0/8"],
      cert: "c.pem",
      key: "k.pem",
      reusePort: true,
      drainDelayMs: 2500,
      maxRequestLine: 100,
      maxHeaderBytes: 200,
      maxHeaderCount: 3,
      maxBody: 0,
      headerTimeoutMs: 1500,
      bodyTimeoutMs: 2000,
      keepAliveTimeoutMs: 250,
      handlerTimeoutMs: 60_000,
      maxConnections: 7,
      queue: 9,
      app: "app.ts",
      dotfiles: true,
      dirListing: true,
      cacheControl: "public, max-age=60",
    },
  });
});

Deno.test("parseCli() rejects timeouts that are not a positive number of seconds", () => {
  for (const value of ["0", "-1", "x", "1e3", "0.0001", "100000"]) {
    assert.throws(
      () => parseCli(["--header-timeout", value], noEnv),
      /Invalid --header-timeout: must be a number of seconds/,
    );
  }
});

Deno.test("parseCli() takes --drain-delay from 0 to 86400 seconds and refuses 86400.001, -1 and words", () => {
  const read = (value: string) => {
    const result = parseCli(["--drain-delay", value], noEnv);
    assert.ok(!result.help);
    return result.options.drainDelayMs;
  };
  assert.equal(read("0"), 0);
  assert.equal(read("0.001"), 1);
  assert.equal(read("86400"), 86_400_000);
  for (const bad of ["86400.001", "86401", "-1", "x", "1e3", ""]) {
    assert.throws(() => read(bad), /Invalid --drain-delay: must be a number of seconds from 0 and at most 86400/, bad);
  }
  const none = parseCli([], noEnv);
  assert.ok(!none.help && none.options.drainDelayMs === 0 && none.options.reusePort === false);
});

Deno.test("parseCli() takes PORT, HOST, WORKERS and CONCURRENCY from the environment unless a flag is given", () => {
  const env = (name: string) =>
    ({ PORT: "8080", HOST: "::1", WORKERS: "2", CONCURRENCY: "5" } as Record<string, string>)[name];
  const fromEnv = parseCli([], env);
  assert.ok(!fromEnv.help);
  assert.equal(fromEnv.options.port, 8080);
  assert.equal(fromEnv.options.host, "::1");
  assert.equal(fromEnv.options.workers, 2);
  assert.equal(fromEnv.options.concurrency, 5);
  const fromFlags = parseCli(["--port", "9090", "--workers", "3", "--concurrency", "1"], env);
  assert.ok(!fromFlags.help);
  assert.equal(fromFlags.options.port, 9090);
  assert.equal(fromFlags.options.workers, 3);
  assert.equal(fromFlags.options.concurrency, 1);
});

Deno.test("parseCli() takes --worker-memory from 64 MiB and refuses 63", () => {
  const result = parseCli(["--worker-memory", "64"], noEnv);
  assert.ok(!result.help && result.options.workerMemoryMb === 64);
  assert.throws(() => parseCli(["--worker-memory", "63"], noEnv), /Invalid --worker-memory/);
  assert.equal(DEFAULTS.workerMemoryMb, undefined, "derived from the machine when not given");
});

Deno.test("workerMemoryFor() shares half the machine's memory among the workers, within 256 to 4096 MiB", () => {
  const GiB = 1024 ** 3;
  assert.equal(workerMemoryFor(4, 24 * GiB), 3072);
  assert.equal(workerMemoryFor(1, 8 * GiB), 4096, "at most 4096");
  assert.equal(workerMemoryFor(32, 8 * GiB), 256, "at least 256");
  assert.equal(workerMemoryFor(16, 16 * GiB), 512);
  assert.equal(workerMemoryFor(4, undefined), 1024, "memory unknown");
});

Deno.test("parseCli() takes --concurrency from 1 to 65536 and refuses 0 and 65537", () => {
  for (const good of ["1", "65536"]) {
    const result = parseCli(["--concurrency", good], noEnv);
    assert.ok(!result.help && result.options.concurrency === Number(good));
  }
  for (const bad of ["0", "65537", "-1", "2.5", ""]) {
    assert.throws(
      () => parseCli(["--concurrency", bad], noEnv),
      (error: unknown) => error instanceof UsageError && /--concurrency/.test(error.message),
      `--concurrency ${JSON.stringify(bad)}`,
    );
  }
  assert.throws(
    () => parseCli([], (name) => name === "CONCURRENCY" ? "0" : undefined),
    /Invalid CONCURRENCY: must be an integer from 1 to 65536, got "0"/,
  );
});

Deno.test("parseCli() returns help for --help and -h", () => {
  assert.deepEqual(parseCli(["--help"], noEnv), { help: true });
  assert.deepEqual(parseCli(["-h"], noEnv), { help: true });
});

Deno.test("parseCli() throws UsageError naming the flag and the value", () => {
  assert.throws(() => parseCli(["--workers", "1e3"], noEnv), UsageError);
  assert.throws(() => parseCli(["--workers", " 2"], noEnv), /Invalid --workers: .* got " 2"/);
  assert.throws(() => parseCli(["--host", ""], noEnv), /Invalid --host/);
  assert.throws(() => parseCli(["--quiet=yes"], noEnv), UsageError);
});

Deno.test("parseCli() ignores a leading -- (as `deno task start -- --port 1` passes it)", () => {
  const result = parseCli(["--", "--port", "1"], noEnv);
  assert.ok(!result.help);
  assert.equal(result.options.port, 1);
});

Deno.test("the README's flag table lists every flag with its default", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  for (const flag of FLAGS) {
    const row = readme.split("\n").find((line) => line.startsWith(`| \`${flag.flag}`));
    assert.ok(row, `README has no row for ${flag.flag}`);
    assert.ok(row.includes(flag.defaultText), `README row for ${flag.flag} does not show ${flag.defaultText}`);
  }
});

Deno.test("parseCli() refuses a Cache-Control value that could break the header line", () => {
  assert.throws(
    () => parseCli(["--cache-control", "a\r\nX: y"], noEnv),
    /Invalid --cache-control: must be printable ASCII/,
  );
  assert.throws(() => parseCli(["--cache-control", " "], noEnv), /Invalid --cache-control/);
});

Deno.test("parseCli() reads sizes with units, at and one past their bounds", () => {
  const read = (...args: string[]) => {
    const result = parseCli(args, noEnv);
    assert.ok(!result.help);
    return result.options;
  };
  assert.equal(read("--max-body", "4m").maxBody, 4 * 1024 * 1024);
  assert.equal(read("--max-body", "512k").maxBody, 512 * 1024);
  assert.equal(read("--max-body", "2GiB").maxBody, 2 * 1024 ** 3);
  assert.equal(read("--max-header-bytes", "16").maxHeaderBytes, 16);
  assert.throws(() => read("--max-header-bytes", "15"), /Invalid --max-header-bytes: must be a size from 16/);
  assert.equal(read("--max-body", "1024g").maxBody, 1024 ** 4);
  assert.throws(() => read("--max-body", "1025g"), UsageError);
  for (const bad of ["1.5m", "4x", "m", "-1k", "4 mb b"]) assert.throws(() => read("--max-body", bad), UsageError, bad);
});

Deno.test("parseCli() reads --log-format from its three words and --admin as [HOST:]PORT", () => {
  for (const format of ["text", "combined", "json"]) {
    const result = parseCli(["--log-format", format], noEnv);
    assert.ok(!result.help && result.options.logFormat === format);
  }
  assert.throws(() => parseCli(["--log-format", "xml"], noEnv), /must be one of text, combined, json/);
  const read = (value: string) => {
    const result = parseCli(["--admin", value], noEnv);
    assert.ok(!result.help);
    return result.options.admin;
  };
  assert.deepEqual(read("9090"), { host: "127.0.0.1", port: 9090 });
  assert.deepEqual(read("0.0.0.0:65535"), { host: "0.0.0.0", port: 65535 });
  assert.deepEqual(read("[::1]:0"), { host: "::1", port: 0 });
  for (const bad of ["65536", "host:", ":80", "a b:1", "http://x:1"]) {
    assert.throws(() => read(bad), /Invalid --admin: must be \[HOST:\]PORT/, bad);
  }
  const none = parseCli([], noEnv);
  assert.ok(!none.help && none.options.admin === undefined && none.options.logFormat === "text");
});

Deno.test("parseCli() reads --trust-proxy as addresses and CIDR ranges, and refuses anything else", () => {
  const read = (value: string) => {
    const result = parseCli(["--trust-proxy", value], noEnv);
    assert.ok(!result.help);
    return result.options.trustProxy;
  };
  assert.deepEqual(read("127.0.0.1"), ["127.0.0.1"]);
  assert.deepEqual(read("10.0.0.0/8, ::1,192.168.0.0/16"), ["10.0.0.0/8", "::1", "192.168.0.0/16"]);
  for (const bad of ["nope", "10.0.0.0/33", "1.2.3.4,", "1.2.3"]) {
    assert.throws(() => read(bad), /Invalid --trust-proxy: must be IP addresses or CIDR ranges/, bad);
  }
  const none = parseCli([], noEnv);
  assert.ok(!none.help && none.options.trustProxy === undefined);
});
