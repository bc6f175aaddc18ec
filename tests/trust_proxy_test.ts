// End to end: --trust-proxy. From a trusted peer, X-Forwarded-For (its rightmost untrusted hop) is
// the client in the log and in the app's info.remoteAddr; from anyone else it is ignored.
import assert from "node:assert/strict";
import { get, request, startServer } from "./_server.ts";

const FORWARDED = "X-Forwarded-For: 203.0.113.9, 10.1.2.3\r\n";

async function clientSeen(trust: string): Promise<{ app: string; log: string }> {
  await using server = await startServer([
    "--workers",
    "1",
    "--log-format",
    "json",
    "--trust-proxy",
    trust,
    "--app",
    "tests/fixtures/apps/echo.ts",
  ]);
  const response = await request(server.port, get("/echo", FORWARDED));
  assert.equal(response.status, 200);
  const line = await server.waitForLine(/"path":"\/echo"/);
  return { app: JSON.parse(response.text).remoteAddr.hostname, log: JSON.parse(line).client };
}

Deno.test("from a trusted proxy, the rightmost untrusted X-Forwarded-For hop is the client, in the log and the app", async () => {
  // 127.0.0.1 (the test's connection) and 10.0.0.0/8 (the inner hop) are trusted.
  assert.deepEqual(await clientSeen("127.0.0.1,10.0.0.0/8"), { app: "203.0.113.9", log: "203.0.113.9" });
  // Only the peer is trusted: the hop nearest it is the client.
  assert.deepEqual(await clientSeen("127.0.0.0/8"), { app: "10.1.2.3", log: "10.1.2.3" });
});

Deno.test("from a peer that is not trusted, X-Forwarded-For is ignored", async () => {
  assert.deepEqual(await clientSeen("192.0.2.1"), { app: "127.0.0.1", log: "127.0.0.1" });
});
