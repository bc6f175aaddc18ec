// End to end: a user's app with its own deno.json (an import map, an npm package) is served under
// its own config, and running any app never writes into the server's own deno.lock.
import assert from "node:assert/strict";
import { join } from "node:path";
import { get, PROJECT_ROOT, request, spawnAsUser, taskArgs, taskFrom } from "./_server.ts";
import { writeFiles } from "./_static.ts";

const SERVER_LOCK = join(PROJECT_ROOT, "deno.lock");

async function project(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webserver-user-app-" });
  await writeFiles(dir, {
    "deno.json": JSON.stringify({ imports: { "greeting": "./lib/greeting.ts", "ms": "npm:ms@2.1.3" } }),
    "lib/greeting.ts": 'export const greeting = "hello";\n',
    "app.ts": 'import { greeting } from "greeting";\nimport ms from "ms";\n' +
      "export default { fetch: () => new Response(`${greeting} ${ms(60_000)}\\n`) };\n",
    "plain.ts": 'import ms from "npm:ms@2.1.3";\nexport default { fetch: () => new Response(`${ms(2000)}\\n`) };\n',
  });
  return dir;
}

Deno.test("an app with its own deno.json runs under that config, and its lock is its own", async () => {
  const dir = await project();
  const before = await Deno.readFile(SERVER_LOCK);
  try {
    // As the README says: the app's config, the server's main.ts and the start task's permissions.
    const permissions = (await taskArgs("start")).filter((word) => word.startsWith("--allow-"));
    await using server = spawnAsUser(dir, [
      "run",
      "--config",
      "deno.json",
      ...permissions,
      join(PROJECT_ROOT, "main.ts"),
      "--port",
      "0",
      "--quiet",
      "--workers",
      "1",
      "--app",
      "./app.ts",
    ]);
    await server.listening();
    assert.equal((await request(server.port, get("/"))).text, "hello 1m\n");
    assert.match(
      await Deno.readTextFile(join(dir, "deno.lock")),
      /npm:ms@2\.1\.3/,
      "the app's lock records its package",
    );
    assert.deepEqual(await Deno.readFile(SERVER_LOCK), before, "the server's deno.lock changed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task start --app with an npm import leaves the server's deno.lock untouched", async () => {
  const dir = await project();
  const before = await Deno.readFile(SERVER_LOCK);
  try {
    await using server = taskFrom(dir, [
      "--quiet",
      "--workers",
      "1",
      "--app",
      "./plain.ts",
    ]);
    await server.listening();
    assert.equal((await request(server.port, get("/"))).text, "2s\n");
    assert.deepEqual(await Deno.readFile(SERVER_LOCK), before, "the server's deno.lock changed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
