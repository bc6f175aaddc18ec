// Test helpers: run the real server as a child process, and talk to it over raw sockets.
import { fileURLToPath as fromFileUrl } from "node:url";
import { within } from "./_within.ts";

export const PROJECT_ROOT = fromFileUrl(new URL("../", import.meta.url));
export const STATIC_ROOT = fromFileUrl(new URL("../static/", import.meta.url));

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The arguments of a `deno task` from deno.json, so tests run it with exactly its flags and permissions. */
export async function taskArgs(name: string): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${PROJECT_ROOT}deno.json`));
  const task = config.tasks[name] as string | { command: string };
  const command = typeof task === "string" ? task : task.command;
  const words = command.split(/\s+/);
  if (words[0] !== "deno") throw new Error(`Unexpected ${name} task: ${command}`);
  return words.slice(1);
}

/**
 * The path of the executable `name` in PATH or in the sbin folders Debian puts servers in
 * (`nginx`, `haproxy`), or `undefined` when it is not installed.
 */
export function findTool(name: string): string | undefined {
  const folders = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/local/sbin"];
  for (const folder of folders.filter(Boolean)) {
    try {
      if (Deno.statSync(`${folder}/${name}`).isFile) return `${folder}/${name}`;
    } catch {
      // not there
    }
  }
  return undefined;
}

/** `static/hello.html` as shipped; `/` answers it with its `<!--worker-->` replaced by the worker's id. */
export const HELLO_FILE = await Deno.readTextFile(`${STATIC_ROOT}hello.html`);

/** The `/` page as worker `id` answers it. */
export function helloFrom(id: number): string {
  return HELLO_FILE.replaceAll("<!--worker-->", String(id));
}

/** The id of the worker whose `/` page `text` is, or `undefined` when it is not that page. */
export function helloWorker(text: string | undefined): number | undefined {
  const id = text?.match(/answered by its worker (\d+)\./)?.[1];
  return id !== undefined && text === helloFrom(Number(id)) ? Number(id) : undefined;
}

/** Asserts that `text` is the `/` page from some worker (`hello.html` naming it). */
export function assertHello(text: string | undefined, message = "not the / page"): void {
  if (helloWorker(text) === undefined) throw new Error(`${message}: ${JSON.stringify(text?.slice(0, 300))}`);
}

/** A server running as a child process. */
export class ServerProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly errors: string[] = [];
  port = 0;
  readonly status: Promise<Deno.CommandStatus>;
  #waiters: Array<() => void> = [];
  #ended: Promise<void>;

  constructor(child: Deno.ChildProcess) {
    this.child = child;
    this.#ended = Promise.all([this.#collect(child.stdout, this.lines), this.#collect(child.stderr, this.errors)])
      .then(() => {});
    this.status = child.status;
  }

  async #collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop()!;
      into.push(...parts);
      for (const wake of this.#waiters.splice(0)) wake();
    }
    if (rest) into.push(rest);
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Waits for the start-up line and takes the port from it. */
  async listening(): Promise<number> {
    const line = await this.waitForLine(/^Listening on /);
    this.port = Number(line.match(/:(\d+)\//)![1]);
    return this.port;
  }

  /** Waits for the admin listener's start-up line (`--admin`) and returns its `http://host:port/`. */
  async adminUrl(): Promise<string> {
    const line = await this.waitForLine(/^Admin on /);
    return line.match(/(http:\/\/\S+\/)/)![1];
  }

  /** Waits for a line on stdout or stderr matching `pattern`. */
  async waitForLine(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = [...this.lines, ...this.errors].find((line) => pattern.test(line));
      if (found !== undefined) return found;
      if (Date.now() > deadline) {
        throw new Error(`No line matching ${pattern} within ${timeoutMs} ms; output:\n${this.output()}`);
      }
      await Promise.race([
        new Promise<void>((resolve) => this.#waiters.push(resolve)),
        new Promise((resolve) => setTimeout(resolve, 50)),
      ]);
    }
  }

  output(): string {
    return [...this.lines, ...this.errors.map((l) => `stderr: ${l}`)].join("\n");
  }

  /** Waits for the process to exit; returns its status once all output is read. */
  async exited(timeoutMs = 20_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) =>
      timer = setTimeout(() => reject(new Error(`Server did not exit; output:\n${this.output()}`)), timeoutMs)
    );
    try {
      const status = await Promise.race([this.status, timeout]);
      await this.#ended;
      return status;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGKILL");
    await this.status;
    await this.#ended;
  }
}

/**
 * `deno ARGS` run in `cwd` as from a user's shell there: without the INIT_CWD this test process
 * inherited from `deno task test` (which `deno task` would keep instead of setting its own).
 * Disposing it sends SIGTERM, which `deno task` passes on to the server (a SIGKILL would leave the
 * server running, holding the output pipes open), and waits for the exit.
 */
export function spawnAsUser(cwd: string, args: string[]): ServerProcess & AsyncDisposable {
  const env = Deno.env.toObject();
  delete env.INIT_CWD;
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    clearEnv: true,
    env: { ...env, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const server = new ServerProcess(child);
  return Object.assign(server, {
    async [Symbol.asyncDispose]() {
      server.kill("SIGTERM");
      await server.exited(10_000);
    },
  });
}

/** `deno task start ARGS` (on a free port) run from `cwd`, as a user runs it from their own folder. */
export function taskFrom(cwd: string, args: string[]): ServerProcess & AsyncDisposable {
  return spawnAsUser(cwd, ["task", "--quiet", "--config", `${PROJECT_ROOT}deno.json`, "start", "--port", "0", ...args]);
}

/** Starts `main.ts` on a free port with the start task's permissions and waits until it listens. */
export async function startServer(args: string[] = [], env: Record<string, string> = {}): Promise<ServerProcess> {
  const server = spawnServer(["--port", "0", ...args], env);
  try {
    await server.listening();
    return server;
  } catch (error) {
    await server[Symbol.asyncDispose]();
    throw error;
  }
}

/** Spawns `main.ts` (or another entry point) with exactly `args`, without waiting for anything. */
export function spawnServer(args: string[], env: Record<string, string> = {}, entry = "main.ts"): ServerProcess {
  const base = START_ARGS.map((word) => word === "main.ts" ? entry : word);
  const child = new Deno.Command(Deno.execPath(), {
    args: [...base, ...args],
    cwd: PROJECT_ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new ServerProcess(child);
}

const START_ARGS = await taskArgs("start");

// The longest a test waits for one response unless it says otherwise: longer than any handler
// the tests run (the book's /sleep is 5 s), short enough that a hung server fails the test.
const READ_TIMEOUT_MS = 20_000;

/** A parsed HTTP response. */
export interface Response1 {
  status: number;
  statusLine: string;
  headers: Map<string, string>;
  body: Uint8Array;
  text: string;
}

/** Reads responses from a raw byte stream; `headFor` marks which responses answer HEAD. */
export class ResponseReader {
  #buf = new Uint8Array(0);
  #conn: Deno.Conn;
  closed = false;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    let n: number | null;
    try {
      n = await this.#conn.read(chunk);
    } catch {
      n = null;
    }
    if (n === null) {
      this.closed = true;
      return false;
    }
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  /**
   * Reads one response; `undefined` when the connection closed first. Rejects when no whole
   * response has arrived within `timeoutMs` (20 s by default), so a server that never answers
   * fails the test instead of hanging the suite.
   */
  read(options: { head?: boolean; timeoutMs?: number } = {}): Promise<Response1 | undefined> {
    const ms = options.timeoutMs ?? READ_TIMEOUT_MS;
    return within(ms, "reading a response", this.#read(options));
  }

  async #read(options: { head?: boolean }): Promise<Response1 | undefined> {
    for (;;) {
      const text = decoder.decode(this.#buf);
      const headEnd = text.indexOf("\r\n\r\n");
      if (headEnd !== -1) {
        const lines = text.slice(0, headEnd).split("\r\n");
        const statusLine = lines[0];
        const headers = new Map<string, string>();
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(":");
          headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
        }
        const status = Number(statusLine.split(" ")[1]);
        const headBytes = encoder.encode(text.slice(0, headEnd + 4)).length;
        const length = options.head || status === 100 || status === 304
          ? 0
          : Number(headers.get("content-length") ?? 0);
        if (this.#buf.length >= headBytes + length) {
          const body = this.#buf.slice(headBytes, headBytes + length);
          this.#buf = this.#buf.slice(headBytes + length);
          return { status, statusLine, headers, body, text: decoder.decode(body) };
        }
      }
      if (!await this.#fill()) return undefined;
    }
  }

  /** Resolves true when the peer closes the connection within `timeoutMs`, with no more bytes. */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), timeoutMs));
    try {
      for (;;) {
        const more = await Promise.race([this.#fill(), timeout]);
        if (more === "timeout") return false;
        if (!more) return this.#buf.length === 0;
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Opens a raw connection to the server. */
export async function connect(port: number): Promise<{ conn: Deno.TcpConn; reader: ResponseReader }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  return { conn, reader: new ResponseReader(conn) };
}

/** Writes all of `text` (or bytes) to the connection. */
export async function send(conn: Deno.Conn, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/** Sends one request on a fresh connection and reads one response. */
export async function request(port: number, raw: string, options: { head?: boolean } = {}): Promise<Response1> {
  const { conn, reader } = await connect(port);
  try {
    await send(conn, raw);
    const response = await reader.read(options);
    if (!response) throw new Error("Connection closed without a response");
    return response;
  } finally {
    conn.close();
  }
}

export function get(path: string, extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
}
