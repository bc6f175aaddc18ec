// End to end: --reuse-port lets several server processes listen on one port (Linux SO_REUSEPORT),
// the kernel spreading new connections over them; one stays up while the other is replaced.
import assert from "node:assert/strict";
import { assertHello, get, PROJECT_ROOT, request, type ServerProcess, spawnServer, startServer } from "./_server.ts";

const requestLines = (server: ServerProcess) => server.lines.filter((line) => /^GET \/ 200 /.test(line)).length;

/** Waits (bounded) until `servers` have logged `total` requests for `/` between them; their counts. */
async function logged(servers: ServerProcess[], total: number): Promise<number[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const counts = servers.map(requestLines);
    if (counts.reduce((sum, n) => sum + n, 0) >= total || Date.now() > deadline) return counts;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `count` requests for `/`, each on a new connection (the kernel picks a listener per connection). */
async function getOnNewConnections(port: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) assertHello((await request(port, get("/"))).text);
}

Deno.test("two processes with --reuse-port on one port both serve, and one serves alone while the other restarts", async () => {
  await using first = await startServer(["--reuse-port", "--workers", "1"]);
  await using second = await startServer(["--reuse-port", "--workers", "1", "--port", String(first.port)]);
  assert.equal(second.port, first.port);
  // 40 connections: with two listeners, all landing on one has odds of 2^-39.
  await getOnNewConnections(first.port, 40);
  const [a, b] = await logged([first, second], 40);
  assert.equal(a + b, 40);
  assert.ok(a > 0 && b > 0, `both processes served (${a} and ${b})`);

  // The second leaves; the first alone answers every new connection, and a replacement joins it.
  second.kill("SIGTERM");
  assert.equal((await second.exited()).code, 0);
  await getOnNewConnections(first.port, 10);
  assert.deepEqual(await logged([first], a + 10), [a + 10]);
  await using third = await startServer(["--reuse-port", "--workers", "1", "--port", String(first.port)]);
  await getOnNewConnections(first.port, 40);
  const [, c] = await logged([first, third], a + 10 + 40);
  assert.ok(c > 0, `the replacement takes its share (${c} of 40)`);
});

Deno.test("--reuse-port cannot share a port held by a process without it: one line, exit 1", async () => {
  await using plain = await startServer(["--workers", "1"]);
  await using late = spawnServer(["--reuse-port", "--workers", "1", "--port", String(plain.port)]);
  const status = await late.exited();
  assert.equal(status.code, 1);
  assert.deepEqual(late.errors, [
    `webserver: Cannot listen on 127.0.0.1:${plain.port}: address already in use ` +
    "(by a process that does not share it: every process on the port needs --reuse-port)",
  ]);
  // Without --reuse-port on a port shared by others: the plain message.
  await using shared = await startServer(["--reuse-port", "--workers", "1"]);
  await using plainLate = spawnServer(["--workers", "1", "--port", String(shared.port)]);
  assert.equal((await plainLate.exited()).code, 1);
  assert.deepEqual(plainLate.errors, [`webserver: Cannot listen on 127.0.0.1:${shared.port}: address already in use`]);
});

Deno.test("--reuse-port under Deno without --unstable-net is one clear line and exit 2, not Deno's abort", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      "--allow-sys",
      "main.ts",
      "--port",
      "0",
      "--reuse-port",
    ],
    cwd: PROJECT_ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  assert.equal(code, 2);
  assert.equal(new TextDecoder().decode(stdout), "");
  assert.equal(
    new TextDecoder().decode(stderr),
    "webserver: Cannot use --reuse-port: run Deno with --unstable-net (the tasks and the compiled binary have it)\n",
  );
});
