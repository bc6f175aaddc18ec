/**
 * Server options: the one table of defaults, and reading options from
 * command-line flags, then the environment, then those defaults.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

/** Everything that configures a server; each default is in {@linkcode DEFAULTS}. */
export interface ServerOptions {
  /** Address to listen on. */
  host: string;
  /** TCP port to listen on; 0 picks a free one. */
  port: number;
  /** Number of worker threads in the pool. */
  workers: number;
  /** Folder holding `hello.html` and `404.html`. */
  root: string;
  /** Serve this many requests, then shut down; `undefined` serves forever. */
  maxRequests: number | undefined;
  /** Leave out the one-line-per-request log. */
  quiet: boolean;
}

/** The default of every option, in one place. */
export const DEFAULTS: Readonly<ServerOptions> = Object.freeze({
  // The book's address: loopback only, so nothing is exposed by accident.
  host: "127.0.0.1",
  port: 7878,
  // The book's pool size.
  workers: 4,
  root: fileURLToPath(new URL("../static/", import.meta.url)),
  maxRequests: undefined,
  quiet: false,
});

// More threads than this is a typo, not a configuration: each worker is a V8 isolate.
const MAX_WORKERS = 1024;

/** A bad command line; the message names the flag and the value. */
export class UsageError extends Error {
  /**
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

/** One command-line flag, as listed by `--help` and the README. */
export interface FlagDoc {
  flag: string;
  value?: string;
  env?: string;
  defaultText: string;
  description: string;
}

/** Every flag the server takes. */
export const FLAGS: readonly FlagDoc[] = [
  { flag: "--host", value: "HOST", env: "HOST", defaultText: DEFAULTS.host, description: "Address to listen on" },
  {
    flag: "--port",
    value: "N",
    env: "PORT",
    defaultText: String(DEFAULTS.port),
    description: "Port; 0 picks a free one",
  },
  {
    flag: "--workers",
    value: "N",
    env: "WORKERS",
    defaultText: String(DEFAULTS.workers),
    description: "Worker threads in the pool",
  },
  {
    flag: "--root",
    value: "DIR",
    defaultText: "static/ beside main.ts",
    description: "Folder with hello.html and 404.html",
  },
  {
    flag: "--max-requests",
    value: "N",
    defaultText: "unlimited",
    description: "Serve N requests, then shut down gracefully",
  },
  { flag: "--quiet", defaultText: "off", description: "Do not log each request" },
  { flag: "--help", defaultText: "", description: "Print this help and exit" },
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
    return `  ${left.padEnd(20)} ${f.description}${extra ? ` (${extra})` : ""}`;
  });
  return [
    "webserver: an HTTP/1.1 server whose requests run on a fixed pool of worker threads",
    "",
    "Usage: webserver [flags]",
    "",
    ...rows,
  ].join("\n");
}

function integer(source: string, text: string, min: number, max: number, what: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`Invalid ${source}: ${what}, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** The result of reading the command line. */
export type CliResult = { help: true } | { help: false; options: ServerOptions };

/**
 * Reads options from flags, then the environment (`PORT`, `HOST`, `WORKERS`),
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
 * const result = parseCli(["--port", "0", "--workers=2"], () => undefined);
 * assert.ok(!result.help && result.options.port === 0 && result.options.workers === 2);
 * ```
 */
export function parseCli(args: string[], env: (name: string) => string | undefined): CliResult {
  let values;
  try {
    ({ values } = parseArgs({
      // `deno task start -- --port 1` passes the `--` through; it separates nothing here.
      args: joinNegativeValues(args[0] === "--" ? args.slice(1) : args),
      strict: true,
      allowPositionals: false,
      options: {
        host: { type: "string" },
        port: { type: "string" },
        workers: { type: "string" },
        root: { type: "string" },
        "max-requests": { type: "string" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new UsageError(describeParseError(error, args));
  }
  if (values.help) return { help: true };

  const pick = (flag: string, name: string | undefined, envName: string | undefined) => {
    if (name !== undefined) return { source: flag, text: name };
    const fromEnv = envName === undefined ? undefined : env(envName);
    return fromEnv === undefined || fromEnv === "" ? undefined : { source: envName!, text: fromEnv };
  };

  const options: ServerOptions = { ...DEFAULTS };
  const host = pick("--host", values.host, "HOST");
  if (host) {
    if (host.text.trim() === "" || /\s/.test(host.text)) {
      throw new UsageError(`Invalid ${host.source}: must be a host name or address, got ${JSON.stringify(host.text)}`);
    }
    options.host = host.text;
  }
  const port = pick("--port", values.port, "PORT");
  if (port) options.port = integer(port.source, port.text, 0, 65535, "must be an integer from 0 to 65535");
  const workers = pick("--workers", values.workers, "WORKERS");
  if (workers) {
    options.workers = integer(
      workers.source,
      workers.text,
      1,
      MAX_WORKERS,
      `must be an integer from 1 to ${MAX_WORKERS}`,
    );
  }
  if (values.root !== undefined) {
    if (values.root === "") throw new UsageError(`Invalid --root: must be a folder, got ""`);
    options.root = values.root;
  }
  if (values["max-requests"] !== undefined) {
    options.maxRequests = integer(
      "--max-requests",
      values["max-requests"],
      1,
      Number.MAX_SAFE_INTEGER,
      "must be a positive integer",
    );
  }
  if (values.quiet) options.quiet = true;
  return { help: false, options };
}

const VALUE_FLAGS = new Set(FLAGS.filter((f) => f.value).map((f) => f.flag));

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
