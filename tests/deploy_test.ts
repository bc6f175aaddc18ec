// The systemd unit in deploy/: systemd itself accepts it, and it keeps the server unprivileged and
// its Deno permissions as compiled (the nginx and HAProxy files are run in balancer_test.ts).
import assert from "node:assert/strict";
import { findTool, PROJECT_ROOT } from "./_server.ts";

const UNIT = await Deno.readTextFile(`${PROJECT_ROOT}deploy/webserver@.service`);

const SYSTEMD_ANALYZE = findTool("systemd-analyze");

/** The unit's `Key=value` settings, every value of a key in order. */
function settings(unit: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of unit.split("\n")) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match) map.set(match[1], [...(map.get(match[1]) ?? []), match[2]]);
  }
  return map;
}

Deno.test({
  name: "systemd-analyze verify accepts deploy/webserver@.service without a warning, and sees a bad key",
  ignore: SYSTEMD_ANALYZE === undefined &&
    (console.log("Skipping: systemd-analyze not installed (Debian's systemd package has it)"), true),
  async fn() {
    const folder = await Deno.makeTempDir({ prefix: "webserver-unit-" });
    try {
      const verify = async (unit: string) => {
        // An instance of the template, running an executable that exists here in place of the binary.
        const path = `${folder}/webserver@7878.service`;
        assert.ok(unit.includes("ExecStart=/usr/local/bin/webserver "));
        await Deno.writeTextFile(
          path,
          unit.replace("ExecStart=/usr/local/bin/webserver", `ExecStart=${Deno.execPath()}`),
        );
        const { code, stdout, stderr } = await new Deno.Command(SYSTEMD_ANALYZE!, {
          args: ["verify", path],
          env: { SYSTEMD_LOG_COLOR: "0" },
        }).output();
        return { code, output: new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr) };
      };
      assert.deepEqual(await verify(UNIT), { code: 0, output: "" });
      // The check is real: a misspelt hardening key is reported.
      const misspelt = await verify(UNIT.replace("ProtectSystem=", "ProtectSytem="));
      assert.match(misspelt.output, /Unknown key 'ProtectSytem'/);
    } finally {
      await Deno.remove(folder, { recursive: true });
    }
  },
});

Deno.test("the unit runs the compiled binary unprivileged, hardened, with its flags from the instance's file", () => {
  const unit = settings(UNIT);
  assert.deepEqual(unit.get("ExecStart"), ["/usr/local/bin/webserver $WEBSERVER_FLAGS"]);
  assert.deepEqual(unit.get("EnvironmentFile"), ["/etc/webserver/%i.env"]);
  // No interpreter with its own permission flags: the binary's baked-in ones apply, never -A.
  assert.ok(!/--allow-all|\s-A\b/.test(UNIT));
  for (
    const [key, value] of Object.entries({
      DynamicUser: "yes",
      NoNewPrivileges: "yes",
      ProtectSystem: "strict",
      ProtectHome: "yes",
      PrivateTmp: "yes",
      CapabilityBoundingSet: "CAP_NET_BIND_SERVICE",
      KillSignal: "SIGTERM",
      Restart: "on-failure",
    })
  ) {
    assert.deepEqual(unit.get(key), [value], key);
  }
});
