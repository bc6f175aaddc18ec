/**
 * The server: `Deno.listen` in the main thread, every connection served by a
 * {@linkcode Connection}, every request run on a {@linkcode ThreadPool} of
 * the worker module its caller names (`main.ts` names `handlers/worker.ts`),
 * and a graceful shutdown.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULTS, startServer } from "./mod.ts";
 * const workerUrl = new URL("../handlers/worker.ts", import.meta.url);
 * const options = { ...DEFAULTS, port: 0, workers: 1, quiet: true };
 * const server = await startServer(options, { info: () => {} }, { workerUrl });
 * const response = await fetch(server.url);
 * assert.ok(response.status === 200);
 * await response.body?.cancel();
 * await server.shutdown();
 * ```
 *
 * @module
 */
import type { RequestLimits } from "../http/mod.ts";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import {
  errorResult,
  HANDLER_CODEC,
  type HandlerData,
  type HandlerJob,
  type HandlerResult,
  RETRY_AFTER,
  type StreamPart,
} from "../exchange/mod.ts";
import {
  JobTimeoutError,
  QueueFullError,
  QueueTimeoutError,
  ThreadPool,
  WorkerCrashError,
  WorkerStartError,
  WorkerStuckError,
} from "../pool/mod.ts";
import { Connection } from "./connection.ts";
import type { SecureContext } from "node:tls";
import { type Acceptor, type ByteStream, KeyPairError, TlsAcceptor, tlsContext } from "./tls.ts";
import type { Admission, ConnectionRules, Reply, RequestLogEntry } from "./connection_state.ts";
import proxyaddr from "npm:proxy-addr@2.0.7";
import { PieceQueue } from "./piece_queue.ts";
import { formatLogLine } from "./log_format.ts";
import type { AdminSource, Metrics } from "./admin.ts";
import { EXIT_RESTART, EXIT_USAGE, type ServerOptions, workerMemoryFor } from "./options.ts";

export * from "./options.ts";
export type { RequestLogEntry } from "./connection_state.ts";
export { formatLogLine } from "./log_format.ts";
export { isLoopback } from "./loopback.ts";

/** Where the server's lines go. */
export interface Logger {
  /** One line of normal output (start-up, request log, shutdown). */
  info(line: string): void;
  /** One line about a failure; defaults to `info`. */
  error?(line: string): void;
}

/** A server that cannot start; the message is one line for the user. */
export class StartError extends Error {
  /** The process's exit status: 2 for a bad command line (a path, an app), 1 otherwise. */
  readonly exitCode: number;

  /**
   * A start-up failure described by `message`, ending the process with `exitCode`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { StartError } from "./mod.ts";
   * assert.ok(new StartError("Cannot listen").name === "StartError");
   * assert.equal(new StartError("Invalid --root: x: no such folder", 2).exitCode, 2);
   * ```
   */
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "StartError";
    this.exitCode = exitCode;
  }
}

/** What the server runs its requests with: the program that starts it names these. */
export interface StartHooks {
  /**
   * The worker module: it must call `runJobs` with `HANDLER_CODEC` and answer
   * each `HandlerJob` with a `HandlerResult` (`exchange/`), as `handlers/worker.ts` does.
   */
  workerUrl: URL;
}

/** A running server. */
export interface Server {
  /** The address really bound. */
  readonly addr: Deno.NetAddr;
  /** The heap limit each worker got, in MiB (given, or derived from the machine's memory). */
  readonly workerMemoryMb: number;
  /**
   * The exit status the process should end with once {@linkcode Server.finished}
   * resolves: 0, or {@linkcode EXIT_RESTART} after too many stuck threads.
   */
  readonly exitCode: number;
  /** `http://host:port/` for the bound address. */
  readonly url: string;
  /** The admin listener's `http://host:port/`, when `--admin` is given. */
  readonly adminUrl: string | undefined;
  /**
   * Starts a graceful shutdown (idempotent) and resolves when it is done: `/healthz` answers 503 at
   * once; after the drain delay the listener closes, keep-alive connections close after their
   * current response, and requests in flight finish.
   */
  shutdown(): Promise<void>;
  /** Resolves when the server has shut down, for whatever reason. */
  readonly finished: Promise<void>;
}

// The longest a request waits for a worker is the handler timeout, but never less than this: a
// replacement worker needs a moment to start, and a short handler timeout should not turn that
// moment into 503s.
const MIN_QUEUE_WAIT_MS = 10_000;
// How long a connection refused for --max-connections has to take its 503 before it is closed.
const REFUSE_WRITE_MS = 1000;
// What accept() throws for a connection its client reset before it was taken (Deno: NotConnected).
const CLIENT_GONE_ON_ACCEPT = [Deno.errors.NotConnected, Deno.errors.ConnectionAborted, Deno.errors.ConnectionReset];
// After a failed accept (out of file descriptors, say), wait before the next try.
const ACCEPT_RETRY_MS = 50;
// How often connections are checked against their deadlines: timeouts are in
// seconds, so a quarter second of lateness does not matter.
const DEADLINE_SWEEP_MS = 250;

function formatUrl(addr: Deno.NetAddr, scheme = "http"): string {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `${scheme}://${host}:${addr.port}/`;
}

// The TLS configuration from --cert and --key, read and checked before anything listens; each
// problem is one line, exit 2. `undefined` for plain HTTP.
async function readTls(options: ServerOptions): Promise<SecureContext | undefined> {
  if (options.cert === undefined && options.key === undefined) return undefined;
  if (options.cert === undefined || options.key === undefined) {
    const given = options.cert === undefined ? "--key" : "--cert";
    throw new StartError(`Invalid ${given}: --cert and --key go together; give both for HTTPS`, EXIT_USAGE);
  }
  const read = async (flag: string, path: string, marker: RegExp) => {
    await checkPath(flag, path, "file");
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      throw new StartError(`Invalid ${flag}: ${path}: cannot read it (${(error as Error).message})`, EXIT_USAGE);
    }
    if (!marker.test(text)) throw new StartError(`Invalid ${flag}: ${path} holds no PEM ${flag.slice(2)}`, EXIT_USAGE);
    return text;
  };
  const cert = await read("--cert", options.cert, /-----BEGIN CERTIFICATE-----/);
  const key = await read("--key", options.key, /-----BEGIN [A-Z ]*PRIVATE KEY-----/);
  try {
    return tlsContext({ cert, key });
  } catch (error) {
    if (!(error instanceof KeyPairError)) throw error;
    throw new StartError(`Invalid --cert/--key: cannot use them for TLS: ${error.message}`, EXIT_USAGE);
  }
}

// The machine's memory in bytes, or undefined when it cannot be read (no --allow-sys=systemMemoryInfo).
function totalMemory(): number | undefined {
  try {
    return Deno.systemMemoryInfo().total;
  } catch {
    return undefined;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

// Checks that a path given on the command line is a file or a folder, in one clear line if not.
async function checkPath(flag: string, path: string, kind: "file" | "folder"): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound ? `no such ${kind}` : (error as Error).message;
    throw new StartError(`Invalid ${flag}: ${path}: ${reason}`, EXIT_USAGE);
  }
  if (kind === "file" ? !info.isFile : !info.isDirectory) {
    throw new StartError(`Invalid ${flag}: ${path} is not a ${kind}`, EXIT_USAGE);
  }
}

// From trusted proxies only, the client is the rightmost X-Forwarded-For address that is not itself
// a trusted proxy (proxy-addr, as Express computes it); from anyone else, the peer.
function clientAddressFor(trusted: string[] | undefined): ConnectionRules["clientAddress"] {
  if (trusted === undefined) return undefined;
  const trust = proxyaddr.compile(trusted);
  return (peer, forwardedFor) => {
    if (forwardedFor === undefined) return peer;
    const request = { connection: { remoteAddress: peer }, headers: { "x-forwarded-for": forwardedFor } };
    return proxyaddr(request as unknown as Parameters<typeof proxyaddr>[0], trust);
  };
}

// Checks, before any worker starts, that the static root can be served: a folder that can be
// listed, whose hello.html and 404.html (each optional) can be read when they are there.
async function checkRoot(root: string): Promise<void> {
  await checkPath("--root", root, "folder");
  const unusable = (reason: string) => new StartError(`Invalid --root: ${reason}`, EXIT_USAGE);
  try {
    for await (const _ of Deno.readDir(root)) break;
  } catch (error) {
    throw unusable(`${root}: cannot list it (${(error as Error).message})`);
  }
  for (const page of ["hello.html", "404.html"]) {
    const path = resolve(root, page);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw unusable(`${path}: cannot read it (${(error as Error).message})`);
    }
    try {
      if (!(await file.stat()).isFile) throw unusable(`${path} is not a file`);
    } finally {
      file.close();
    }
  }
}

/**
 * Binds, starts the pool, and serves until {@linkcode Server.shutdown} (or
 * `maxRequests`) ends it.
 *
 * @throws {StartError} When the root is not a folder, the address cannot be
 *   bound, or a worker cannot start.
 */
export async function startServer(
  options: ServerOptions,
  logger: Logger,
  hooks: StartHooks,
): Promise<Server> {
  const logError = logger.error ?? logger.info;
  await checkRoot(options.root);
  if (options.app !== undefined) await checkPath("--app", options.app, "file");
  const app = options.app === undefined ? undefined : pathToFileURL(resolve(options.app)).href;
  const tls = await readTls(options);
  // Deno ends the process, uncatchably, when an unstable option is used without its flag; its
  // unstable network API (present only with --unstable-net) tells beforehand.
  if (options.reusePort && typeof (Deno as { listenDatagram?: unknown }).listenDatagram !== "function") {
    throw new StartError(
      "Cannot use --reuse-port: run Deno with --unstable-net (the tasks and the compiled binary have it)",
      EXIT_USAGE,
    );
  }
  let listener: Acceptor;
  try {
    // Only asked for when wanted: Deno allows the option only with --unstable-net.
    const address = { hostname: options.host, port: options.port, ...(options.reusePort && { reusePort: true }) };
    const tcp = Deno.listen(address);
    listener = tls ? new TlsAcceptor(tcp, tls) : tcp;
  } catch (error) {
    const where = `${options.host}:${options.port}`;
    if (error instanceof Deno.errors.AddrInUse) {
      const hint = options.reusePort
        ? " (by a process that does not share it: every process on the port needs --reuse-port)"
        : "";
      throw new StartError(`Cannot listen on ${where}: address already in use${hint}`);
    }
    if (error instanceof Deno.errors.AddrNotAvailable) {
      throw new StartError(`Cannot listen on ${where}: address not available on this machine`);
    }
    throw new StartError(`Cannot listen on ${where}: ${(error as Error).message}`);
  }

  const limits: RequestLimits = {
    maxRequestLine: options.maxRequestLine,
    maxHeaderBytes: options.maxHeaderBytes,
    maxHeaderCount: options.maxHeaderCount,
    maxBody: options.maxBody,
  };
  const workerMemoryMb = options.workerMemoryMb ?? workerMemoryFor(options.workers, totalMemory());
  const maxStuckThreads = options.maxStuckThreads ?? Math.max(1, navigator.hardwareConcurrency || 1);
  const queueTimeoutMs = Math.max(options.handlerTimeoutMs, MIN_QUEUE_WAIT_MS);
  let exitCode = 0;
  const pool = new ThreadPool<HandlerJob, HandlerResult>(options.workers, hooks.workerUrl, {
    data: {
      root: options.root,
      limits,
      app,
      appName: options.app,
      dotfiles: options.dotfiles,
      dirListing: options.dirListing,
      cacheControl: options.cacheControl,
    } satisfies HandlerData,
    codec: HANDLER_CODEC,
    concurrency: options.concurrency,
    resourceLimits: { maxOldGenerationSizeMb: workerMemoryMb },
    maxQueue: options.queue,
    // Workers that never served (a failed start) are stopped without a word.
    onWorkerStop: (id) => started && logger.info(`Shutting down worker ${id}`),
    onWorkerReplaced: (id, reason) => {
      metrics?.workerReplaced();
      if (reason instanceof WorkerStuckError) {
        // Deno cannot stop its thread: it may run on. Past the limit, only a fresh process helps.
        const { stuckThreads } = reason;
        logError(
          `Worker ${id} replaced: ${reason.message}; its thread cannot be stopped ` +
            `(stuck threads: ${stuckThreads}; at ${maxStuckThreads} the server drains and exits ${EXIT_RESTART})`,
        );
        if (stuckThreads >= maxStuckThreads && exitCode === 0) {
          exitCode = EXIT_RESTART;
          logError(
            `${stuckThreads} stuck worker thread${stuckThreads === 1 ? "" : "s"}, the limit: ` +
              `draining, then exiting with status ${EXIT_RESTART} so that a supervisor starts a fresh process`,
          );
          queueMicrotask(() => shutdown());
        }
        return;
      }
      const retry = reason instanceof WorkerStartError && reason.retryInMs !== undefined
        ? `; trying again in ${reason.retryInMs / 1000} s`
        : "";
      logError(retry ? `${reason.message}${retry}` : `Worker ${id} replaced: ${reason.message}`);
    },
  });
  let started = false;
  try {
    await pool.ready;
    started = true;
  } catch (error) {
    listener.close();
    await pool.close();
    // A worker's start-up error that carries an exit status (a bad app) is the user's input: its
    // own one-line message, as raised. Anything else: what the pool says, with the status 1.
    if (error instanceof WorkerStartError && error.exitCode !== undefined) {
      throw new StartError(error.detail, error.exitCode);
    }
    throw new StartError((error as Error).message);
  }

  const connections = new Set<Connection>();
  let admitted = 0;
  let stopping: Promise<void> | undefined;
  // From the first call to shutdown: /healthz answers 503 while the server, for --drain-delay, serves on.
  let draining = false;
  let drainTimer: ReturnType<typeof setTimeout> | undefined;
  const finished = Promise.withResolvers<void>();

  // The admin listener, answered here in the main thread: it keeps answering while every worker is busy.
  const source: AdminSource = {
    stats: () => pool.stats(),
    connections: () => connections.size,
    draining: () => draining,
  };
  // Loaded only with --admin: the metrics library costs memory a server without it should not pay.
  const adminModule = options.admin ? await import("./admin.ts") : undefined;
  const metrics: Metrics | undefined = adminModule && new adminModule.Metrics(source);
  let admin: Deno.HttpServer<Deno.NetAddr> | undefined;
  if (options.admin) {
    const { host, port } = options.admin;
    try {
      admin = Deno.serve({ hostname: host, port, onListen: () => {} }, adminModule!.adminHandler(source, metrics!));
    } catch (error) {
      listener.close();
      await pool.close();
      const where = `${host}:${port}`;
      const reason = error instanceof Deno.errors.AddrInUse ? "address already in use" : (error as Error).message;
      throw new StartError(`Cannot listen on ${where} (--admin): ${reason}`);
    }
  }

  const host = {
    limits,
    admit(first: boolean): Admission {
      // Never past --max-requests. (Its shutdown starts in a microtask; another connection may ask first.)
      if (options.maxRequests !== undefined && admitted >= options.maxRequests) return "no";
      // Stopping on a signal: a connection accepted before the listener closed gets its first
      // request served, as the last; any other request gets 503.
      if (stopping && !first) return "no";
      admitted++;
      if (stopping) return "last";
      if (options.maxRequests !== undefined && admitted >= options.maxRequests) {
        // Start the shutdown once the caller has registered this last request; at once, as the
        // last response already says Connection: close.
        queueMicrotask(() => shutdown(0));
        return "last";
      }
      return "yes";
    },
    timeouts: {
      header: options.headerTimeoutMs,
      body: options.bodyTimeoutMs,
      keepAlive: options.keepAliveTimeoutMs,
      // A response that cannot be written in as long as a body may take to arrive never will be.
      send: options.bodyTimeoutMs,
    },
    accepting: () => stopping === undefined,
    run,
    // The metrics count what the log records, so with --admin every request gets an entry.
    logsRequests: !options.quiet || metrics !== undefined,
    logsHeaders: options.logFormat === "combined",
    // The admin page shows what each worker's oldest request is.
    labelsRequests: metrics !== undefined,
    clientAddress: clientAddressFor(options.trustProxy),
    // Requests over TLS get https: URLs.
    secure: tls !== undefined,
    logRequest: (entry: RequestLogEntry) => {
      metrics?.observe(entry);
      if (!options.quiet) logger.info(formatLogLine(entry, options.logFormat));
    },
    logError: (message: string, error: unknown) => logError(`${message}: ${describe(error)}`),
    logNotice: (line: string) => logError(line),
  };

  // Runs a request on the pool. A streamed response resolves at its head, and its body
  // pieces follow through `more`, each acknowledged to the worker once written.
  // Most responses are not streamed, so the stream's parts are made only when a head arrives.
  function run(job: HandlerJob, signal?: AbortSignal, label?: string): Promise<Reply> {
    return new Promise<Reply>((resolve) => {
      let pieces: PieceQueue | undefined;
      pool.execute(job, {
        transfer: [job.bytes.buffer as ArrayBuffer],
        timeout: options.handlerTimeoutMs,
        // A request that cannot even start within this long gets 503, never waits forever.
        queueTimeout: queueTimeoutMs,
        signal,
        // For the admin page's "oldest request"; made only with --admin.
        label,
        onProgress(data, ack, cancel) {
          const part = data as StreamPart;
          if (part.kind === "head") {
            const queue = pieces = new PieceQueue(ack);
            resolve({ ...part.result, more: () => queue.next(), abandon: cancel });
          } else {
            pieces!.push(part.bytes, ack);
          }
        },
      }).then(
        (result) => pieces ? pieces.end(result.bytes) : resolve(result),
        (error) => pieces ? pieces.fail(error) : resolve(failedJob(error)),
      );
    });
  }

  // A request the pool could not answer: the client gets a status; the connection logs the
  // reason of a 500 (never to the client), unless the client has gone.
  function failedJob(error: unknown): Reply {
    if (error instanceof QueueFullError || error instanceof QueueTimeoutError) {
      return { ...errorResult(503, [RETRY_AFTER]), failure: error };
    }
    // Past the handler timeout, on its own or on a worker found stuck (whose replacement is logged).
    if (error instanceof JobTimeoutError || error instanceof WorkerStuckError) {
      return { ...errorResult(503), failure: error };
    }
    // Dropped before it ran because its client went away.
    if (error instanceof DOMException && error.name === "AbortError") return { ...errorResult(503), failure: error };
    // Its worker died: the pool's replacement line says why.
    if (error instanceof WorkerCrashError) return { ...errorResult(500), failure: error };
    // The handler threw: its stack goes to the log, never to the client.
    return { ...errorResult(500), failure: error, reportFailure: true };
  }

  const busy = errorResult(503, [RETRY_AFTER]).bytes;
  function refuse(conn: ByteStream): void {
    const close = () => {
      try {
        conn.close();
      } catch {
        // already closed
      }
    };
    // Best effort and never awaited: the accept loop must not wait on a client, and a client that
    // takes nothing (or never finishes its TLS handshake) is closed all the same.
    const timer = setTimeout(close, REFUSE_WRITE_MS);
    conn.write(busy).catch(() => {}).finally(() => {
      clearTimeout(timer);
      close();
    });
  }

  const sweep = setInterval(() => {
    const now = performance.now();
    for (const connection of connections) connection.checkDeadline(now);
  }, DEADLINE_SWEEP_MS);

  async function acceptLoop(): Promise<void> {
    while (!stopping) {
      let conn: ByteStream;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (stopping) break;
        // A client that gave up (reset) before its connection was accepted: nothing is wrong here.
        if (CLIENT_GONE_ON_ACCEPT.some((kind) => error instanceof kind)) continue;
        logError(`Cannot accept a connection: ${describe(error)}`);
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      if (stopping) {
        conn.close();
        break;
      }
      if (connections.size >= options.maxConnections) {
        refuse(conn);
        continue;
      }
      const connection = new Connection(conn, host);
      connections.add(connection);
      connection.done.finally(() => connections.delete(connection));
    }
  }

  async function stop(): Promise<void> {
    try {
      listener.close();
    } catch {
      // already closed
    }
    for (const connection of connections) connection.closeWhenIdle();
    // The sweep keeps running meanwhile, so a client that stopped reading cannot hold up the exit.
    await Promise.allSettled([...connections].map((c) => c.done));
    clearInterval(sweep);
    await pool.close();
    // Last: health and metrics answer until the very end of the drain.
    await admin?.shutdown();
  }

  // Health turns 503 at once; after `delayMs` (unless a later call asks for less) the listener
  // closes and connections drain.
  function shutdown(delayMs = options.drainDelayMs): Promise<void> {
    if (!draining) {
      draining = true;
      if (delayMs > 0) {
        logger.info(`Draining: /healthz answers 503; serving on for ${delayMs / 1000} s (--drain-delay), then closing`);
        drainTimer = setTimeout(beginStop, delayMs);
      }
    }
    if (delayMs === 0) beginStop();
    return finished.promise.catch(() => {});
  }

  function beginStop(): void {
    clearTimeout(drainTimer);
    stopping ??= stop().then(finished.resolve, finished.reject);
  }

  acceptLoop();
  const addr = listener.addr;
  return {
    addr,
    url: formatUrl(addr, tls ? "https" : "http"),
    adminUrl: admin ? formatUrl(admin.addr) : undefined,
    workerMemoryMb,
    get exitCode() {
      return exitCode;
    },
    shutdown: () => shutdown(),
    finished: finished.promise,
  };
}
