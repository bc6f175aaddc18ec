// End to end: --root takes any folder (an ordinary site without hello.html or 404.html), refuses
// one it cannot serve before any worker starts, and relative paths given to `deno task` from
// another folder are that folder's.
import assert from "node:assert/strict";
import { join } from "node:path";
import { get, request, spawnServer, startServer, taskFrom } from "./_server.ts";
import { writeFiles } from "./_static.ts";

const INDEX = "<!DOCTYPE html><title>My site</title><link rel=stylesheet href=style.css><h1>My site</h1>\n";

async function site(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webserver-site-" });
  await writeFiles(dir, { "site/index.html": INDEX, "site/style.css": "h1 { color: teal }\n" });
  return dir;
}

Deno.test("a folder without hello.html or 404.html is served: / is its index, a miss gets the built-in 404 page", async () => {
  const dir = await site();
  try {
    await using server = await startServer(["--quiet", "--workers", "2", "--root", join(dir, "site")]);
    const sleeping = request(server.port, get("/sleep"));
    const started = performance.now();
    const index = await request(server.port, get("/"));
    assert.equal(index.status, 200);
    assert.equal(index.text, INDEX);
    assert.match(index.headers.get("content-type") ?? "", /^text\/html/);
    const css = await request(server.port, get("/style.css"));
    assert.equal(css.status, 200);
    assert.match(css.headers.get("content-type") ?? "", /^text\/css/);
    const missing = await request(server.port, get("/nothing-here"));
    assert.equal(missing.status, 404);
    assert.match(missing.text, /<h1>404 Not Found<\/h1>/);
    // The book's /sleep still blocks its worker, then answers what / answers.
    const slept = await sleeping;
    assert.equal(slept.status, 200);
    assert.equal(slept.text, INDEX);
    assert.ok(performance.now() - started > 4000, "the /sleep did not sleep");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function refused(args: string[]): Promise<{ code: number; stderr: string[]; started: boolean }> {
  const server = spawnServer(args);
  const status = await server.exited();
  return { code: status.code, stderr: server.errors, started: server.lines.some((l) => l.startsWith("Listening")) };
}

Deno.test("a root that cannot be served stops start-up with one line and exit 2, before any worker starts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webserver-root-" });
  try {
    await writeFiles(dir, { "file.txt": "x", "odd/index.html": "x" });
    await Deno.mkdir(join(dir, "odd", "hello.html"));
    const cases: Array<[string, string]> = [
      [join(dir, "missing"), `Invalid --root: ${join(dir, "missing")}: no such folder`],
      [join(dir, "file.txt"), `Invalid --root: ${join(dir, "file.txt")} is not a folder`],
      [join(dir, "odd"), `Invalid --root: ${join(dir, "odd", "hello.html")} is not a file`],
    ];
    for (const [root, message] of cases) {
      const { code, stderr, started } = await refused(["--workers", "2", "--root", root]);
      assert.equal(code, 2, root);
      assert.deepEqual(stderr, [`webserver: ${message}`]);
      assert.ok(!started);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task start from another folder takes --root and --app relative to that folder", async () => {
  const dir = await site();
  try {
    await writeFiles(dir, { "app.ts": 'export default { fetch: () => new Response("from my app\\n") };\n' });
    {
      await using server = taskFrom(dir, ["--quiet", "--workers", "1", "--root", "site"]);
      await server.listening();
      assert.equal((await request(server.port, get("/"))).text, INDEX);
    }
    {
      await using server = taskFrom(dir, ["--quiet", "--workers", "1", "--app", "./app.ts"]);
      await server.listening();
      assert.equal((await request(server.port, get("/"))).text, "from my app\n");
    }
    // A path that is not there is named as resolved, so the user sees where it was looked for.
    await using missing = taskFrom(dir, ["--workers", "1", "--root", "nowhere"]);
    const status = await missing.exited();
    assert.equal(status.code, 2);
    assert.deepEqual(missing.errors, [`webserver: Invalid --root: ${join(dir, "nowhere")}: no such folder`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
