// End to end: each --log-format on a few requests, from a real server process's stdout.
import assert from "node:assert/strict";
import { connect, get, request, send, type ServerProcess, startServer } from "./_server.ts";

// The combined log format: %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i".
const COMBINED =
  /^(\S+) (\S+) (\S+) \[(\d{2})\/([A-Z][a-z]{2})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"$/;

/** Sends the same few requests to a server and returns its request log lines. */
async function logLines(server: ServerProcess): Promise<string[]> {
  const headers = 'Referer: http://example.com/from\r\nUser-Agent: test-agent/1.0 "quoted"\r\n';
  assert.equal((await request(server.port, get("/", headers))).status, 200);
  assert.equal((await request(server.port, get("/missing?q=1"))).status, 404);
  // A request that cannot be read is logged too.
  const { conn, reader } = await connect(server.port);
  try {
    await send(conn, "BAD\r\n\r\n");
    assert.equal((await reader.read())?.status, 400);
  } finally {
    conn.close();
  }
  // The log line of the last request is written once its answer is out.
  await server.waitForLine(/(^- - 400 |" 400 |"status":400)/);
  return server.lines.filter((line) => !/^(Listening on|Admin on)/.test(line));
}

Deno.test("--log-format text is one line of method, target, status, bytes, time and worker", async () => {
  await using server = await startServer(["--workers", "1"]);
  const lines = await logLines(server);
  assert.match(lines[0], /^GET \/ 200 \d+B \d+\.\d{2}ms worker 0$/);
  assert.match(lines[1], /^GET \/missing\?q=1 404 \d+B \d+\.\d{2}ms worker 0$/);
  assert.match(lines[2], /^- - 400 \d+B \d+\.\d{2}ms main$/);
});

Deno.test("--log-format combined matches the combined format, with Referer and User-Agent escaped", async () => {
  await using server = await startServer(["--workers", "1", "--log-format", "combined"]);
  const lines = await logLines(server);
  assert.equal(lines.length, 3, lines.join("\n"));
  const fields = lines.map((line) => {
    const match = COMBINED.exec(line);
    assert.ok(match, `not the combined format: ${line}`);
    return match;
  });
  const [first, second, third] = fields;
  assert.equal(first[1], "127.0.0.1");
  assert.equal(first[11], "GET / HTTP/1.1");
  assert.equal(first[12], "200");
  assert.equal(first[14], "http://example.com/from");
  assert.equal(first[15], "test-agent/1.0 \\x22quoted\\x22");
  assert.equal(first[10], "+0000");
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const logged = Date.UTC(+first[6], months.indexOf(first[5]), +first[4], +first[7], +first[8], +first[9]);
  assert.ok(Math.abs(logged - Date.now()) < 60_000, `logged time ${first[4]}/${first[5]}/${first[6]} is not now`);
  assert.equal(second[11], "GET /missing?q=1 HTTP/1.1");
  assert.equal(second[12], "404");
  assert.deepEqual([second[14], second[15]], ["-", "-"]);
  assert.deepEqual([third[11], third[12]], ["-", "400"]);
});

Deno.test("--log-format json writes one object per line with time, client, method, path, status, bytes, duration, worker", async () => {
  await using server = await startServer(["--workers", "1", "--log-format", "json"]);
  const lines = await logLines(server);
  const entries = lines.map((line) => JSON.parse(line));
  assert.deepEqual(Object.keys(entries[0]), [
    "time",
    "client",
    "method",
    "path",
    "status",
    "bytes",
    "duration_ms",
    "worker",
  ]);
  assert.ok(Math.abs(Date.parse(entries[0].time) - Date.now()) < 60_000);
  assert.equal(entries[0].client, "127.0.0.1");
  assert.deepEqual([entries[0].method, entries[0].path, entries[0].status, entries[0].worker], ["GET", "/", 200, 0]);
  assert.ok(entries[0].bytes > 0 && entries[0].duration_ms >= 0);
  assert.deepEqual([entries[1].path, entries[1].status], ["/missing?q=1", 404]);
  assert.deepEqual([entries[2].method, entries[2].status, entries[2].worker], ["-", 400, null]);
});
