// The admin listener's live page in a real browser: Debian's chromium, driven by playwright-core
// (tests/fixtures/page_driver.ts, in a process of its own; see there why). The page loads with no
// console errors, shows every worker, one busy during a /sleep and idle after.
// UPDATE_SCREENSHOT=1 also saves the README's screenshot, docs/admin_page.png.
import assert from "node:assert/strict";
import { PROJECT_ROOT, startServer } from "./_server.ts";
import { within } from "./_within.ts";

const CHROMIUM = "/usr/bin/chromium";

Deno.test("the live page shows each worker, one busy during a /sleep and idle after, without console errors", async () => {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    assert.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); .ci/run does`);
  }
  await using server = await startServer(["--quiet", "--workers", "3", "--admin", "0"]);
  const admin = await server.adminUrl();
  const screenshot = Deno.env.get("UPDATE_SCREENSHOT") === "1" ? [`${PROJECT_ROOT}docs/admin_page.png`] : [];
  const driver = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tests/fixtures/page_driver.ts", admin, `http://127.0.0.1:${server.port}/`, ...screenshot],
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = await within(60_000, "the browser driver", driver.output());
  const text = new TextDecoder().decode(output.stdout).trim().split("\n").at(-1) ?? "";
  assert.ok(output.success, `the driver failed:\n${new TextDecoder().decode(output.stderr)}`);
  const seen = JSON.parse(text);
  assert.equal(seen.error, undefined, `the driver stopped: ${seen.error}`);
  assert.equal(seen.rows, 3, "one row per worker");
  assert.equal(seen.busyBefore, 0);
  assert.equal(seen.busyDuring, 1, "one worker busy during the /sleep");
  assert.ok(seen.busyAfterMs < 3000, `busy shown after ${seen.busyAfterMs} ms`);
  assert.equal(seen.busyCard, "1 / 3");
  assert.match(seen.workersText, /GET \/sleep/);
  assert.equal(seen.sleepStatus, 200);
  assert.equal(seen.idleAfter, 3, "all idle after the /sleep");
  assert.deepEqual(seen.problems, [], "the page logged errors or failed requests");
});
