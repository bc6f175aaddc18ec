/**
 * Server options: the one table of defaults, and reading options from
 * command-line flags, then the environment, then those defaults.
 *
 * @module
 */
import { parseArgs } from "node:util";
import proxyaddr from "npm:proxy-addr@2.0.7";
import { fileURLToPath } from "node:url";
import { DEFAULT_LIMITS } from "../http/mod.ts";
import { MAX_CONCURRENCY } from "../pool/mod.ts";

/**
 * How each request's log line is written: `text` (method, target, status, bytes, time, worker),
 * `combined` (the nginx/Apache combined format), or `json` (one object per line).
 */
export type LogFormat = "text" | "combined" | "json";

/** The log formats, as `--log-format` takes them. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "combined", "json"];

/** An address to listen on. */
export interface ListenAddress {
  /** The host name or IP address. */
  host: string;
  /** The TCP port; 0 picks a free one. */
  port: number;
}

/** Everything that configures a server; each default is in {@linkcode DEFAULTS}. */
export interface ServerOptions {
  /** Address to listen on. */
  host: string;
  /** TCP port to listen on; 0 picks a free one. */
  port: number;
  /** Number of worker threads in the pool. */
  workers: number;
  /** Requests one worker runs at once (while some await, the others run). */
  concurrency: number;
  /** Heap limit of each worker in MiB; `undefined` derives it from the machine's memory ({@linkcode workerMemoryFor}). */
  workerMemoryMb: number | undefined;
  /**
   * Worker threads stuck in code Deno cannot stop that the server tolerates;
   * at this many it drains and exits with {@linkcode EXIT_RESTART}. `undefined`: one per CPU core.
   */
  maxStuckThreads: number | undefined;
  /** Folder to serve: `/` is its `hello.html` if it has one, else its index; its `404.html` or a built-in page. */
  root: string;
  /** Serve this many requests, then shut down; `undefined` serves forever. */
  maxRequests: number | undefined;
  /** Leave out the one-line-per-request log. */
  quiet: boolean;
  /** How each request's log line is written. */
  logFormat: LogFormat;
  /** Where the admin listener (metrics, health, the live page) listens; `undefined`: none. */
  admin: ListenAddress | undefined;
  /**
   * Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed: from them, the client
   * is the rightmost address in it that is not itself trusted. `undefined`: nobody's.
   */
  trustProxy: string[] | undefined;
  /** A PEM certificate chain file: with `key`, the server speaks HTTP/1.1 over TLS. */
  cert: string | undefined;
  /** The PEM private key file of `cert`. */
  key: string | undefined;
  /**
   * Listen with `SO_REUSEPORT`, so several server processes share the port and the kernel spreads
   * new connections over them (Linux; needs Deno's `--unstable-net`, which the tasks pass).
   */
  reusePort: boolean;
  /**
   * Milliseconds a graceful shutdown keeps serving, with `/healthz` already 503, before it stops
   * accepting: time for a load balancer that polls health to stop sending here.
   */
  drainDelayMs: number;
  /** Longest request line in bytes (414 beyond). */
  maxRequestLine: number;
  /** Largest header section in bytes (431 beyond). */
  maxHeaderBytes: number;
  /** Most header fields (431 beyond). */
  maxHeaderCount: number;
  /** Largest request body in bytes (413 beyond). */
  maxBody: number;
  /** Milliseconds a client has to send a request's header section (408 after). */
  headerTimeoutMs: number;
  /** Milliseconds a client has to send a request's body once the headers are in (408 after). */
  bodyTimeoutMs: number;
  /** Milliseconds an idle keep-alive connection stays open. */
  keepAliveTimeoutMs: number;
  /** Milliseconds a handler may run before its worker is replaced (503). */
  handlerTimeoutMs: number;
  /** Most open connections; more get 503 and are closed. */
  maxConnections: number;
  /** Most requests waiting for a worker; more get 503 with Retry-After. */
  queue: number;
  /** An app module (`default { fetch }`) to run instead of the built-in app; relative to the working directory. */
  app: string | undefined;
  /** Serve files and folders whose name starts with a dot. */
  dotfiles: boolean;
  /** List folders that have no `index.html`. */
  dirListing: boolean;
  /** `Cache-Control` sent with static files. */
  cacheControl: string;
}

/** The default of every option, in one place. */
export const DEFAULTS: Readonly<ServerOptions> = Object.freeze({
  // The book's address: loopback only, so nothing is exposed by accident.
  host: "127.0.0.1",
  port: 7878,
  // The book's pool size.
  workers: 4,
  // Enough for about a thousand requests awaiting I/O at once on the default four workers (an
  // awaiting request costs a few kilobytes, not a thread); beyond that requests wait in the
  // shared queue, where any worker with room, an idle one first, takes them.
  concurrency: 256,
  // Derived from the machine's memory when the server starts; see workerMemoryFor.
  workerMemoryMb: undefined,
  // One per core: each stuck thread that spins takes a core for good, so at this many the
  // process would have none left (navigator.hardwareConcurrency when the server starts).
  maxStuckThreads: undefined,
  root: fileURLToPath(new URL("../static/", import.meta.url)),
  maxRequests: undefined,
  quiet: false,
  logFormat: "text",
  // Off: a window into the server is opened only on purpose.
  admin: undefined,
  // Nobody: a forwarded address is only as good as the proxy that wrote it.
  trustProxy: undefined,
  // Plain HTTP unless both are given.
  cert: undefined,
  key: undefined,
  // Off: a second process on the same port is then an error, as it usually is a mistake.
  reusePort: false,
  // None: without a balancer polling health, serving on after the signal only delays the exit.
  drainDelayMs: 0,
  // The protocol limits and their reasons live beside the parser.
  ...DEFAULT_LIMITS,
  // nginx's client_header_timeout is 60 s; 10 s is ample for any real client and starves slowloris.
  headerTimeoutMs: 10_000,
  // A 1 MiB body at a slow 100 KiB/s arrives in 10 s; 30 s leaves room.
  bodyTimeoutMs: 30_000,
  // Browsers reuse idle connections within a few seconds or not at all.
  keepAliveTimeoutMs: 5_000,
  // Long enough for any reasonable request (and the 5 s /sleep); a handler past it is stuck.
  handlerTimeoutMs: 30_000,
  // About 10 000 open sockets fit easily in this machine's memory and default file limits.
  maxConnections: 10_000,
  // A burst of a few thousand requests waits; beyond that, answering 503 at once beats a long wait.
  queue: 4096,
  app: undefined,
  // Dotfiles (.env, .git) are secrets far more often than content.
  dotfiles: false,
  dirListing: false,
  // For development: caches may keep files but must revalidate (cheap, thanks to ETag), so edits show at once.
  cacheControl: "no-cache",
});

// More threads than this is a typo, not a configuration: each worker is a V8 isolate.
const MAX_WORKERS = 1024;
// A worker's runtime, the app and its modules need a few tens of MiB before any request.
const MIN_WORKER_MEMORY_MB = 64;
// The derived heap limit: the share of the machine's memory the workers may fill together (the
// main thread, socket buffers and everything else keep the rest), and its bounds for one worker.
const WORKER_MEMORY_SHARE = 0.5;
const AUTO_WORKER_MEMORY_MB = { min: 256, max: 4096 };
// When the machine's memory cannot be read.
const FALLBACK_WORKER_MEMORY_MB = 1024;

/**
 * The exit status for a bad command line: an unknown flag, a bad value, a path
 * that is not there, an `--app` that cannot be used.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXIT_USAGE } from "./options.ts";
 * assert.equal(EXIT_USAGE, 2);
 * ```
 */
export const EXIT_USAGE = 2;

/**
 * The exit status after the server drained and stopped because too many worker
 * threads were stuck in code Deno cannot stop (`--max-stuck-threads`): a
 * supervisor should start a fresh process (sysexits' `EX_TEMPFAIL`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXIT_RESTART } from "./options.ts";
 * assert.equal(EXIT_RESTART, 75);
 * ```
 */
export const EXIT_RESTART = 75;

/**
 * The heap limit each of `workers` workers gets by default: half of
 * `totalBytes` (the machine's memory) shared among them, between 256 and
 * 4096 MiB; 1024 MiB when the memory is not known.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { workerMemoryFor } from "./options.ts";
 * assert.equal(workerMemoryFor(4, 24 * 1024 ** 3), 3072);
 * assert.equal(workerMemoryFor(4, 64 * 1024 ** 3), 4096);
 * assert.equal(workerMemoryFor(64, 8 * 1024 ** 3), 256);
 * assert.equal(workerMemoryFor(4, undefined), 1024);
 * ```
 */
export function workerMemoryFor(workers: number, totalBytes: number | undefined): number {
  if (totalBytes === undefined || !(totalBytes > 0)) return FALLBACK_WORKER_MEMORY_MB;
  const share = Math.floor(totalBytes * WORKER_MEMORY_SHARE / workers / (1024 * 1024));
  return Math.min(AUTO_WORKER_MEMORY_MB.max, Math.max(AUTO_WORKER_MEMORY_MB.min, share));
}
// A day: longer timeouts are mistakes, and setTimeout cannot go past about 24.8 days anyway.
const MAX_TIMEOUT_SECONDS = 86_400;

/** A bad command line; the message names the flag and the value. */
export class UsageError extends Error {
  /**
   * A bad command line described by `message`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { UsageError } from "./options.ts";
   * assert.ok(new UsageError("Unknown flag --x").name === "UsageError");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * How a flag's value is read: a word, free text, no value, a whole number, a size in bytes (with an
 * optional unit), seconds with decimals, one of a list of words, an address (`[HOST:]PORT`), or
 * comma-separated IP addresses and CIDR ranges.
 */
export type Kind =
  | "string"
  | "text"
  | "boolean"
  | "integer"
  | "size"
  | "seconds"
  | "choice"
  | "address"
  | "addresses";

/** One command-line flag, as listed by `--help` and the README. */
export interface FlagDoc {
  /** The flag as typed, `--port`. */
  flag: string;
  /** The option it sets, or `help`. */
  key: keyof ServerOptions | "help";
  /** How its value is read. */
  kind: Kind;
  /** The value's placeholder in help text. */
  value?: string;
  /** The environment variable read when the flag is absent. */
  env?: string;
  /** Smallest accepted value, for numbers. */
  min?: number;
  /** Largest accepted value, for numbers. */
  max?: number;
  /** The accepted words, for a choice. */
  choices?: readonly string[];
  /** The default, as shown to people. */
  defaultText: string;
  /** What it does. */
  description: string;
}

const seconds = (ms: number) => `${ms / 1000}`;

/** Every flag the server takes. */
export const FLAGS: readonly FlagDoc[] = [
  {
    flag: "--host",
    key: "host",
    kind: "string",
    value: "HOST",
    env: "HOST",
    defaultText: DEFAULTS.host,
    description: "Address to listen on",
  },
  {
    flag: "--port",
    key: "port",
    kind: "integer",
    value: "N",
    env: "PORT",
    min: 0,
    max: 65535,
    defaultText: String(DEFAULTS.port),
    description: "Port; 0 picks a free one",
  },
  {
    flag: "--workers",
    key: "workers",
    kind: "integer",
    value: "N",
    env: "WORKERS",
    min: 1,
    max: MAX_WORKERS,
    defaultText: String(DEFAULTS.workers),
    description: "Worker threads in the pool",
  },
  {
    flag: "--concurrency",
    key: "concurrency",
    kind: "integer",
    value: "N",
    env: "CONCURRENCY",
    min: 1,
    max: MAX_CONCURRENCY,
    defaultText: String(DEFAULTS.concurrency),
    description: "Requests one worker runs at once; 1 is the book's model",
  },
  {
    flag: "--worker-memory",
    key: "workerMemoryMb",
    kind: "integer",
    value: "MB",
    min: MIN_WORKER_MEMORY_MB,
    max: 1024 * 1024,
    defaultText: "half the memory / workers",
    description: "Heap limit of each worker in MiB (256 to 4096 when derived); past it the worker is replaced",
  },
  {
    flag: "--max-stuck-threads",
    key: "maxStuckThreads",
    kind: "integer",
    value: "N",
    min: 1,
    max: MAX_WORKERS,
    defaultText: "CPU cores",
    description: `Stuck threads Deno cannot stop before the server drains and exits ${EXIT_RESTART} for a restart`,
  },
  {
    flag: "--root",
    key: "root",
    kind: "string",
    value: "DIR",
    defaultText: "static/ beside main.ts",
    description: "Folder to serve; / is its hello.html, or its index without one; 404.html or a built-in page",
  },
  {
    flag: "--max-requests",
    key: "maxRequests",
    kind: "integer",
    value: "N",
    min: 1,
    defaultText: "unlimited",
    description: "Serve N requests, then shut down gracefully",
  },
  { flag: "--quiet", key: "quiet", kind: "boolean", defaultText: "off", description: "Do not log each request" },
  {
    flag: "--log-format",
    key: "logFormat",
    kind: "choice",
    value: "FORMAT",
    choices: LOG_FORMATS,
    defaultText: DEFAULTS.logFormat,
    description: "Request log lines: text, combined (nginx/Apache) or json (one object a line)",
  },
  {
    flag: "--admin",
    key: "admin",
    kind: "address",
    value: "[HOST:]PORT",
    defaultText: "off",
    description: "Admin listener (host 127.0.0.1 unless given): /metrics, /healthz and a live page of the pool",
  },
  {
    flag: "--cert",
    key: "cert",
    kind: "string",
    value: "FILE",
    defaultText: "none (plain HTTP)",
    description: "PEM certificate chain; with --key, serve HTTPS (HTTP/1.1 over TLS)",
  },
  {
    flag: "--key",
    key: "key",
    kind: "string",
    value: "FILE",
    defaultText: "none",
    description: "PEM private key of --cert",
  },
  {
    flag: "--trust-proxy",
    key: "trustProxy",
    kind: "addresses",
    value: "ADDR[,ADDR...]",
    defaultText: "nobody",
    description: "Proxies (IPs or CIDR ranges) whose X-Forwarded-For sets the client address",
  },
  {
    flag: "--reuse-port",
    key: "reusePort",
    kind: "boolean",
    defaultText: "off",
    description: "Share the port with other processes that use it too (Linux SO_REUSEPORT)",
  },
  {
    flag: "--drain-delay",
    key: "drainDelayMs",
    kind: "seconds",
    value: "SECONDS",
    min: 0,
    defaultText: seconds(DEFAULTS.drainDelayMs),
    description: "On SIGTERM, /healthz turns 503 at once; keep serving this long, then drain",
  },
  {
    flag: "--max-request-line",
    key: "maxRequestLine",
    kind: "size",
    value: "SIZE",
    min: 16,
    defaultText: String(DEFAULTS.maxRequestLine),
    description: "Longest request line; longer gets 414",
  },
  {
    flag: "--max-header-bytes",
    key: "maxHeaderBytes",
    kind: "size",
    value: "SIZE",
    min: 16,
    defaultText: String(DEFAULTS.maxHeaderBytes),
    description: "Largest header section; larger gets 431",
  },
  {
    flag: "--max-header-count",
    key: "maxHeaderCount",
    kind: "integer",
    value: "N",
    min: 1,
    defaultText: String(DEFAULTS.maxHeaderCount),
    description: "Most header fields; more gets 431",
  },
  {
    flag: "--max-body",
    key: "maxBody",
    kind: "size",
    value: "SIZE",
    min: 0,
    defaultText: `${DEFAULTS.maxBody} (1 MiB)`,
    description: "Largest request body; larger gets 413",
  },
  {
    flag: "--header-timeout",
    key: "headerTimeoutMs",
    kind: "seconds",
    value: "SECONDS",
    defaultText: seconds(DEFAULTS.headerTimeoutMs),
    description: "Time to send the request headers; then 408",
  },
  {
    flag: "--body-timeout",
    key: "bodyTimeoutMs",
    kind: "seconds",
    value: "SECONDS",
    defaultText: seconds(DEFAULTS.bodyTimeoutMs),
    description: "Time for a body to arrive (then 408) or a response to be read",
  },
  {
    flag: "--keepalive-timeout",
    key: "keepAliveTimeoutMs",
    kind: "seconds",
    value: "SECONDS",
    defaultText: seconds(DEFAULTS.keepAliveTimeoutMs),
    description: "Idle keep-alive connections close after this",
  },
  {
    flag: "--handler-timeout",
    key: "handlerTimeoutMs",
    kind: "seconds",
    value: "SECONDS",
    defaultText: seconds(DEFAULTS.handlerTimeoutMs),
    description: "A handler running longer is stopped, 503",
  },
  {
    flag: "--max-connections",
    key: "maxConnections",
    kind: "integer",
    value: "N",
    min: 1,
    defaultText: String(DEFAULTS.maxConnections),
    description: "More open connections get 503",
  },
  {
    flag: "--queue",
    key: "queue",
    kind: "integer",
    value: "N",
    min: 1,
    defaultText: String(DEFAULTS.queue),
    description: "Requests waiting for a worker; more get 503",
  },
  {
    flag: "--app",
    key: "app",
    kind: "string",
    value: "FILE",
    defaultText: "the built-in app",
    description: "Module whose default export has fetch(request, info)",
  },
  { flag: "--dotfiles", key: "dotfiles", kind: "boolean", defaultText: "off", description: "Serve dotfiles" },
  {
    flag: "--dir-listing",
    key: "dirListing",
    kind: "boolean",
    defaultText: "off",
    description: "List folders without index.html",
  },
  {
    flag: "--cache-control",
    key: "cacheControl",
    kind: "text",
    value: "VALUE",
    defaultText: DEFAULTS.cacheControl,
    description: "Cache-Control for static files",
  },
  { flag: "--help", key: "help", kind: "boolean", defaultText: "", description: "Print this help and exit" },
];

/**
 * The `--help` text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { helpText } from "./options.ts";
 * assert.ok(helpText().includes("--workers"));
 * ```
 */
export function helpText(): string {
  const rows = FLAGS.map((f) => {
    const left = f.value ? `${f.flag} ${f.value}` : f.flag;
    const extra = [f.defaultText && `default: ${f.defaultText}`, f.env && `env: ${f.env}`].filter(Boolean).join(", ");
    return `  ${left.padEnd(28)} ${f.description}${extra ? ` (${extra})` : ""}`;
  });
  return [
    "webserver: an HTTP/1.1 server whose requests run on a fixed pool of worker threads",
    "",
    "Usage: webserver [flags]",
    "",
    ...rows,
  ].join("\n");
}

// Sizes past this are mistakes: no request part is that large.
const MAX_SIZE = 1024 ** 4;
const SIZE_UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * A size in bytes from text: a whole number, optionally followed by `k`, `m` or `g` (KiB, MiB,
 * GiB; any case, with or without a trailing `b`/`ib`). `undefined` when it is not one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSize } from "./options.ts";
 * assert.equal(parseSize("4m"), 4 * 1024 * 1024);
 * assert.equal(parseSize("512KiB"), 512 * 1024);
 * assert.equal(parseSize("100"), 100);
 * assert.equal(parseSize("1.5m"), undefined);
 * ```
 */
export function parseSize(text: string): number | undefined {
  const match = /^([0-9]+)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  if (!match || (match[2] === "" && /b$/i.test(text.trim()))) return undefined;
  const bytes = Number(match[1]) * SIZE_UNITS[match[2].toLowerCase()];
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * An address from `[HOST:]PORT` text; the host is 127.0.0.1 when not given, and an IPv6 host is
 * written in brackets (`[::1]:9000`). `undefined` when it is not one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAddress } from "./options.ts";
 * assert.deepEqual(parseAddress("9090"), { host: "127.0.0.1", port: 9090 });
 * assert.deepEqual(parseAddress("0.0.0.0:9090"), { host: "0.0.0.0", port: 9090 });
 * assert.deepEqual(parseAddress("[::1]:0"), { host: "::1", port: 0 });
 * assert.equal(parseAddress("localhost:99999"), undefined);
 * ```
 */
export function parseAddress(text: string): ListenAddress | undefined {
  const match = /^(?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?([0-9]{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port > 65535) return undefined;
  const host = match[1] === undefined ? "127.0.0.1" : match[1].replace(/^\[(.*)\]$/, "$1");
  return { host, port };
}

/** The result of reading the command line. */
export type CliResult = { help: true } | { help: false; options: ServerOptions };

function readValue(
  flag: FlagDoc,
  source: string,
  text: string,
): string | number | boolean | ListenAddress | string[] {
  const fail = (what: string): never => {
    throw new UsageError(`Invalid ${source}: ${what}, got ${JSON.stringify(text)}`);
  };
  switch (flag.kind) {
    case "string":
      if (text.trim() === "" || /\s/.test(text)) {
        fail(flag.key === "root" ? "must be a folder" : "must not be empty or contain spaces");
      }
      return text;
    case "text":
      // Sent as a header value: printable, and never able to end the header line.
      if (text.trim() === "" || /[^\x20-\x7e]/.test(text)) fail("must be printable ASCII and not empty");
      return text;
    case "integer": {
      const min = flag.min ?? 0;
      const max = flag.max ?? Number.MAX_SAFE_INTEGER;
      const what = flag.max === undefined
        ? min === 1 ? "must be a positive integer" : `must be an integer of at least ${min}`
        : `must be an integer from ${min} to ${max}`;
      if (!/^[0-9]+$/.test(text) || Number(text) < min || Number(text) > max) fail(what);
      return Number(text);
    }
    case "size": {
      const min = flag.min ?? 0;
      const max = flag.max ?? MAX_SIZE;
      const bytes = parseSize(text);
      if (bytes === undefined || bytes < min || bytes > max) {
        fail(`must be a size from ${min} to ${max} bytes (a number, or with k, m or g for KiB, MiB, GiB)`);
      }
      return bytes!;
    }
    case "choice":
      if (!flag.choices!.includes(text)) fail(`must be one of ${flag.choices!.join(", ")}`);
      return text;
    case "addresses": {
      const list = text.split(",").map((part) => part.trim());
      try {
        if (list.some((part) => part === "")) throw new TypeError("empty entry");
        proxyaddr.compile(list);
      } catch (error) {
        if (!(error instanceof TypeError)) throw error;
        fail("must be IP addresses or CIDR ranges, separated by commas");
      }
      return list;
    }
    case "address": {
      const address = parseAddress(text);
      return address ?? fail("must be [HOST:]PORT with a port from 0 to 65535");
    }
    case "seconds": {
      // Timeouts must be above 0; a flag with `min: 0` (a delay) also takes 0.
      const zero = flag.min === 0;
      const what = `must be a number of seconds ${zero ? "from 0" : "above 0"} and at most ${MAX_TIMEOUT_SECONDS}`;
      if (!/^[0-9]+(\.[0-9]+)?$/.test(text)) fail(what);
      const ms = Math.round(Number(text) * 1000);
      if ((ms < 1 && !(zero && ms === 0)) || ms > MAX_TIMEOUT_SECONDS * 1000) fail(what);
      return ms;
    }
    case "boolean":
      return true;
  }
}

/**
 * Reads options from flags, then the environment (`PORT`, `HOST`, `WORKERS`, `CONCURRENCY`),
 * then {@linkcode DEFAULTS}.
 *
 * @param args The command-line arguments, without the program name.
 * @param env Looks up an environment variable.
 * @throws {UsageError} When a flag is unknown or a value is invalid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCli } from "./options.ts";
 * const result = parseCli(["--port", "0", "--workers=2", "--header-timeout", "2.5"], () => undefined);
 * assert.ok(!result.help && result.options.port === 0 && result.options.headerTimeoutMs === 2500);
 * ```
 */
export function parseCli(args: string[], env: (name: string) => string | undefined): CliResult {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      // `deno task start -- --port 1` passes the `--` through; it separates nothing here.
      args: joinNegativeValues(args[0] === "--" ? args.slice(1) : args),
      strict: true,
      allowPositionals: false,
      options: {
        ...Object.fromEntries(
          FLAGS.map((f) => [f.flag.slice(2), { type: f.kind === "boolean" ? "boolean" as const : "string" as const }]),
        ),
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new UsageError(describeParseError(error, args));
  }
  if (values.help) return { help: true };

  const options: Record<string, unknown> = { ...DEFAULTS };
  for (const flag of FLAGS) {
    if (flag.key === "help") continue;
    const given = values[flag.flag.slice(2)];
    if (typeof given === "boolean") {
      options[flag.key] = given;
    } else if (given !== undefined) {
      options[flag.key] = readValue(flag, flag.flag, given);
    } else if (flag.env !== undefined) {
      const fromEnv = env(flag.env);
      if (fromEnv !== undefined && fromEnv !== "") options[flag.key] = readValue(flag, flag.env, fromEnv);
    }
  }
  return { help: false, options: options as unknown as ServerOptions };
}

const VALUE_FLAGS = new Set(FLAGS.filter((f) => f.kind !== "boolean").map((f) => f.flag));

// `--workers -1` is a negative value, not a flag: join it as `--workers=-1`
// so the value check, not the flag parser, explains what is wrong.
function joinNegativeValues(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (VALUE_FLAGS.has(args[i]) && /^-[0-9.]/.test(args[i + 1] ?? "")) {
      out.push(`${args[i]}=${args[++i]}`);
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

function describeParseError(error: unknown, args: string[]): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  const quoted = message.match(/'([^']+)'/)?.[1] ?? "";
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `Unknown flag ${quoted.split(" ")[0]} (see --help)`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `Unexpected argument ${JSON.stringify(quoted || args.find((a) => !a.startsWith("-")))} (see --help)`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return `Missing or invalid value for ${quoted.split(" ")[0]} (see --help)`;
    default:
      return `${message} (see --help)`;
  }
}
