/**
 * The `webserver` command: reads options (flags, then environment, then
 * defaults), starts the server, and shuts it down gracefully on SIGINT or
 * SIGTERM. A second signal exits at once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 * // Prints the help and returns the exit code, without starting anything.
 * assert.ok((await main(["--help"])) === 0);
 * ```
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  EXIT_USAGE,
  helpText,
  isLoopback,
  parseCli,
  type Server,
  type ServerOptions,
  StartError,
  type StartHooks,
  startServer,
  UsageError,
} from "./server/mod.ts";

// `deno task` forwards the terminal's Ctrl-C to the server, so one keypress can
// arrive twice a few milliseconds apart; a repeat inside this window is the same press.
const REPEAT_SIGNAL_WINDOW_MS = 500;

const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type ShutdownSignal = keyof typeof SIGNAL_EXIT_CODES;

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no permission to read it: treat it as unset
  }
}

/**
 * `options` with `--root` and `--app` made absolute against `base` (the folder the user ran the
 * command from), so that messages name the real path and `deno task` from another folder works.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULTS } from "./server/mod.ts";
 * import { resolvePaths } from "./main.ts";
 * const options = resolvePaths({ ...DEFAULTS, root: "site", app: "./app.ts" }, "/home/me/project");
 * assert.equal(options.root, "/home/me/project/site");
 * assert.equal(options.app, "/home/me/project/app.ts");
 * // Not there, but beside main.ts (where a compiled binary embeds it): taken from there.
 * const embedded = resolvePaths({ ...DEFAULTS, app: "bench/app.ts" }, "/nowhere");
 * assert.ok(embedded.app!.endsWith("/bench/app.ts") && !embedded.app!.startsWith("/nowhere"));
 * ```
 */
export function resolvePaths(options: ServerOptions, base: string): ServerOptions {
  return {
    ...options,
    root: resolve(base, options.root),
    app: options.app === undefined ? undefined : resolveApp(options.app, base),
    cert: options.cert === undefined ? undefined : resolve(base, options.cert),
    key: options.key === undefined ? undefined : resolve(base, options.key),
  };
}

// An app path: against `base`; failing that, against this module's folder, which in a compiled
// binary is where `deno compile --include` embedded the app (see the README's "One executable").
function resolveApp(app: string, base: string): string {
  const local = resolve(base, app);
  if (isAbsolute(app) || exists(local)) return local;
  const embedded = fileURLToPath(new URL(app, import.meta.url));
  return exists(embedded) ? embedded : local;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

// The folder relative paths on the command line are taken from. `deno task` runs in this project's
// folder and passes the folder the user ran it from as INIT_CWD; a process started anywhere else
// (directly, or by a program that itself ran under `deno task`) takes its own working directory.
function baseFolder(): string {
  const cwd = Deno.cwd();
  const initCwd = readEnv("INIT_CWD");
  return initCwd && resolve(cwd) === fileURLToPath(new URL(".", import.meta.url)).replace(/\/$/, "") ? initCwd : cwd;
}

// The handler workers: main.ts wires the server to them; neither imports the other.
const WORKER_URL = new URL("./handlers/worker.ts", import.meta.url);

/**
 * Runs the server with the given arguments and resolves to the exit code:
 * 0 after a graceful shutdown or `--help`, 1 when the server cannot start,
 * 2 for a bad command line, 75 (`EXIT_RESTART`) after draining because too
 * many worker threads were stuck in code that cannot be stopped. `hooks` lets an embedding program (or a test)
 * swap the worker module; by default it is `handlers/worker.ts`.
 */
export async function main(args: string[], hooks: Partial<StartHooks> = {}): Promise<number> {
  let cli;
  try {
    cli = parseCli(args, readEnv);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`webserver: ${error.message}`);
      return EXIT_USAGE;
    }
    throw error;
  }
  if (cli.help) {
    console.log(helpText());
    return 0;
  }
  const options = resolvePaths(cli.options, baseFolder());

  // Listen for signals before the start-up line, so a signal right after it is never missed.
  let firstSignalAt: number | undefined;
  let server: Server | undefined;
  const onSignal = (signal: ShutdownSignal) => {
    const now = performance.now();
    if (firstSignalAt === undefined) {
      firstSignalAt = now;
      console.log(`Received ${signal}: shutting down gracefully (send it again to exit at once)`);
      server?.shutdown();
    } else if (now - firstSignalAt > REPEAT_SIGNAL_WINDOW_MS) {
      console.log(`Received ${signal} again: exiting now`);
      Deno.exit(SIGNAL_EXIT_CODES[signal]);
    }
  };
  const listeners = (Object.keys(SIGNAL_EXIT_CODES) as ShutdownSignal[]).map((signal) => {
    const listener = () => onSignal(signal);
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  const removeListeners = () => {
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  };

  try {
    server = await startServer(options, { info: console.log, error: console.error }, {
      workerUrl: hooks.workerUrl ?? WORKER_URL,
    });
  } catch (error) {
    removeListeners();
    if (error instanceof StartError) {
      console.error(`webserver: ${error.message}`);
      return error.exitCode;
    }
    throw error;
  }
  const workers = `${options.workers} worker${options.workers === 1 ? "" : "s"}`;
  const each = `${options.concurrency} request${options.concurrency === 1 ? "" : "s"} at a time each`;
  console.log(`Listening on ${server.url} with ${workers}, ${each}, up to ${server.workerMemoryMb} MiB of heap each`);
  if (server.adminUrl !== undefined) {
    console.log(`Admin on ${server.adminUrl} (live page; /metrics for Prometheus; /healthz)`);
    if (!isLoopback(options.admin!.host)) {
      console.error(
        `webserver: warning: the admin listener on ${options.admin!.host} is not a loopback address: ` +
          "anyone who can reach it sees the pool's state and metrics",
      );
    }
  }
  if (firstSignalAt !== undefined) server.shutdown();
  await server.finished;
  removeListeners();
  console.log("Server stopped");
  return server.exitCode;
}

if (import.meta.main) {
  // A bug in one connection's code must not end the process and every other connection with it.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    console.error(`Unhandled rejection: ${event.reason instanceof Error ? event.reason.stack : event.reason}`);
  });
  Deno.exit(await main(Deno.args));
}
