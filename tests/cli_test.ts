// The command line: bad values exit 2 with one clear line naming the flag and the value.
import assert from "node:assert/strict";
import { workerMemoryFor } from "../server/options.ts";
import { FLAGS } from "../server/options.ts";
import { spawnServer, startServer } from "./_server.ts";

async function run(args: string[], env: Record<string, string> = {}) {
  const server = spawnServer(args, env);
  const status = await server.exited();
  return { code: status.code, stdout: server.lines, stderr: server.errors };
}

const BAD_VALUES: Array<[string[], Record<string, string>, string]> = [
  [["--workers", "0"], {}, 'Invalid --workers: must be an integer from 1 to 1024, got "0"'],
  [["--workers", "-1"], {}, 'Invalid --workers: must be an integer from 1 to 1024, got "-1"'],
  [["--workers=-1"], {}, 'Invalid --workers: must be an integer from 1 to 1024, got "-1"'],
  [["--workers", "2.5"], {}, 'Invalid --workers: must be an integer from 1 to 1024, got "2.5"'],
  [["--workers", "x"], {}, 'Invalid --workers: must be an integer from 1 to 1024, got "x"'],
  [["--port", "65536"], {}, 'Invalid --port: must be an integer from 0 to 65535, got "65536"'],
  [["--port", "-1"], {}, 'Invalid --port: must be an integer from 0 to 65535, got "-1"'],
  [["--port", "http"], {}, 'Invalid --port: must be an integer from 0 to 65535, got "http"'],
  [["--max-requests", "0"], {}, 'Invalid --max-requests: must be a positive integer, got "0"'],
  [[], { WORKERS: "0" }, 'Invalid WORKERS: must be an integer from 1 to 1024, got "0"'],
  [[], { PORT: "99999" }, 'Invalid PORT: must be an integer from 0 to 65535, got "99999"'],
  [["--verbose"], {}, "Unknown flag --verbose (see --help)"],
  [["extra"], {}, 'Unexpected argument "extra" (see --help)'],
  [["--port"], {}, "Missing or invalid value for --port (see --help)"],
  [["--root", "/no/such/folder"], {}, "Invalid --root: /no/such/folder: no such folder"],
];

for (const [args, env, message] of BAD_VALUES) {
  const shown = [...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...args].join(" ");
  Deno.test(`"${shown}" exits 2 with: ${message}`, async () => {
    const { code, stderr, stdout } = await run(args, env);
    assert.equal(code, 2);
    assert.deepEqual(stderr, [`webserver: ${message}`]);
    assert.deepEqual(stdout, []);
  });
}

Deno.test("--help lists every flag and exits 0", async () => {
  const { code, stdout } = await run(["--help"]);
  assert.equal(code, 0);
  for (const { flag } of FLAGS) {
    assert.ok(stdout.some((line) => line.trimStart().startsWith(`${flag} `)), `--help does not list ${flag}`);
  }
});

Deno.test("a port in use is reported in one line with the address, exit 1", async () => {
  await using first = await startServer(["--workers", "1"]);
  const { code, stderr } = await run(["--port", String(first.port), "--workers", "1"]);
  assert.equal(code, 1);
  assert.deepEqual(stderr, [`webserver: Cannot listen on 127.0.0.1:${first.port}: address already in use`]);
});

Deno.test("PORT, HOST, WORKERS and CONCURRENCY are read from the environment when the flag is absent", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const server = spawnServer(["--max-requests", "1"], {
    PORT: String(port),
    HOST: "127.0.0.1",
    WORKERS: "3",
    CONCURRENCY: "7",
  });
  await using _ = server;
  const line = await server.waitForLine(/^Listening on /);
  assert.match(
    line,
    new RegExp(
      `^Listening on http://127\\.0\\.0\\.1:${port}/ with 3 workers, 7 requests at a time each, up to \\d+ MiB of heap each$`,
    ),
  );
  const response = await fetch(`http://127.0.0.1:${port}/`);
  await response.body?.cancel();
  assert.equal((await server.exited()).code, 0);
  assert.equal(server.lines.filter((l) => /^Shutting down worker /.test(l)).length, 3);
});

Deno.test("a flag wins over its environment variable", async () => {
  await using server = await startServer(["--workers", "1", "--concurrency", "1"], { WORKERS: "5", CONCURRENCY: "9" });
  assert.match(server.lines[0], /with 1 worker, 1 request at a time each, up to \d+ MiB of heap each$/);
});

Deno.test("the start-up line prints the port really bound when --port is 0", async () => {
  await using server = await startServer(["--workers", "1"]);
  assert.notEqual(server.port, 0);
  // One worker on this machine's memory: the derived heap limit is the top of its range.
  assert.equal(
    server.lines[0],
    `Listening on http://127.0.0.1:${server.port}/ with 1 worker, 256 requests at a time each, up to ${
      workerMemoryFor(1, Deno.systemMemoryInfo().total)
    } MiB of heap each`,
  );
  const response = await fetch(`http://127.0.0.1:${server.port}/`);
  assert.equal(response.status, 200);
  await response.body?.cancel();
});
