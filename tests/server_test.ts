// End to end: the real server process, over real sockets.
import assert from "node:assert/strict";
import {
  assertHello,
  connect,
  get,
  helloFrom,
  helloWorker,
  request,
  send,
  startServer,
  STATIC_ROOT,
} from "./_server.ts";

// Worker ids are one digit here, so every worker's / page has this length.
const HELLO_LENGTH = String(new TextEncoder().encode(helloFrom(0)).length);
const NOT_FOUND = await Deno.readTextFile(`${STATIC_ROOT}404.html`);

Deno.test("the server over real sockets", async (t) => {
  await using server = await startServer(["--workers", "2"]);
  const { port } = server;

  await t.step(
    "GET / answers 200 with hello.html naming the worker that answered, and the standard headers",
    async () => {
      const response = await request(port, get("/"));
      assert.equal(response.statusLine, "HTTP/1.1 200 OK");
      assertHello(response.text);
      // The page names the worker, as the log line does.
      const worker = helloWorker(response.text)!;
      assert.ok(worker === 0 || worker === 1, `worker ${worker} of 2`);
      await server.waitForLine(new RegExp(`^GET / 200 \\d+B [\\d.]+ms worker ${worker}$`));
      assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
      assert.equal(response.headers.get("content-length"), HELLO_LENGTH);
      assert.equal(response.headers.get("server"), "webserver");
      const date = Date.parse(response.headers.get("date") ?? "");
      assert.ok(Math.abs(date - Date.now()) < 5000, `Date header ${response.headers.get("date")}`);
    },
  );

  await t.step("an unknown path answers 404 with exactly 404.html", async () => {
    const response = await request(port, get("/no/such/page"));
    assert.equal(response.statusLine, "HTTP/1.1 404 Not Found");
    assert.equal(response.text, NOT_FOUND);
    assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
  });

  await t.step("a query string does not change the route", async () => {
    assertHello((await request(port, get("/?name=value"))).text);
  });

  await t.step("HEAD answers the same headers as GET without a body", async () => {
    const { conn, reader } = await connect(port);
    try {
      await send(conn, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + get("/nope"));
      const head = await reader.read({ head: true });
      assert.equal(head?.status, 200);
      assert.equal(head?.headers.get("content-length"), HELLO_LENGTH);
      assert.equal(head?.body.length, 0);
      // The next response starts right after the head: no body bytes were sent.
      const next = await reader.read();
      assert.equal(next?.status, 404);
      assert.equal(next?.text, NOT_FOUND);
    } finally {
      conn.close();
    }
  });

  await t.step("another method on a known path answers 405 with Allow", async () => {
    const response = await request(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    assert.equal(response.status, 405);
    assert.equal(response.headers.get("allow"), "GET, HEAD");
  });

  await t.step("two requests share one keep-alive connection", async () => {
    const { conn, reader } = await connect(port);
    try {
      await send(conn, get("/"));
      const first = await reader.read();
      assert.equal(first?.status, 200);
      assert.equal(first?.headers.get("connection"), undefined);
      await send(conn, get("/missing"));
      const second = await reader.read();
      assert.equal(second?.status, 404);
      assert.equal(second?.text, NOT_FOUND);
    } finally {
      conn.close();
    }
  });

  await t.step("three pipelined requests in one write are answered in order", async () => {
    const { conn, reader } = await connect(port);
    try {
      await send(conn, get("/") + get("/a") + "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
      assertHello((await reader.read())?.text);
      assert.equal((await reader.read())?.status, 404);
      const third = await reader.read({ head: true });
      assert.equal(third?.status, 200);
      assert.equal(third?.body.length, 0);
    } finally {
      conn.close();
    }
  });

  await t.step("pipelined requests run on several workers at once, answers still in order", async () => {
    const { conn, reader } = await connect(port);
    try {
      const start = performance.now();
      await send(conn, get("/sleep?first") + get("/sleep?second") + get("/x"));
      const responses = [await reader.read(), await reader.read(), await reader.read()];
      const elapsed = performance.now() - start;
      assert.deepEqual(responses.map((r) => r?.status), [200, 200, 404]);
      // One after another, two five-second sleeps take ten seconds.
      assert.ok(elapsed < 8000, `two pipelined /sleep requests on two workers took ${elapsed} ms`);
      // The log line follows the response on the server's stdout; wait for it.
      await server.waitForLine(/^GET \/x 404 /);
      const logged = server.lines.filter((l) => /^GET \/(sleep\?first|sleep\?second|x) /.test(l));
      assert.deepEqual(logged.map((l) => l.split(" ")[1]), ["/sleep?first", "/sleep?second", "/x"]);
      assert.notEqual(logged[0].split(" worker ")[1], logged[1].split(" worker ")[1], "both sleeps ran on one worker");
    } finally {
      conn.close();
    }
  });

  await t.step("Connection: close is honoured: the response says so and the server closes", async () => {
    const { conn, reader } = await connect(port);
    try {
      await send(conn, get("/", "Connection: close\r\n") + get("/"));
      const response = await reader.read();
      assert.equal(response?.headers.get("connection"), "close");
      assert.ok(await reader.waitClosed(), "connection stayed open, or a second response came");
    } finally {
      conn.close();
    }
  });

  await t.step("HTTP/1.0 closes after the response unless it asks for keep-alive", async () => {
    {
      const { conn, reader } = await connect(port);
      await send(conn, "GET / HTTP/1.0\r\n\r\n");
      const response = await reader.read();
      assertHello(response?.text);
      assert.equal(response?.headers.get("connection"), "close");
      assert.ok(await reader.waitClosed());
      conn.close();
    }
    {
      const { conn, reader } = await connect(port);
      await send(conn, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
      const kept = await reader.read();
      assert.equal(kept?.status, 200);
      // An HTTP/1.0 client keeps the connection only when the response says so.
      assert.equal(kept?.headers.get("connection"), "keep-alive");
      await send(conn, "GET /x HTTP/1.0\r\n\r\n");
      assert.equal((await reader.read())?.status, 404);
      assert.ok(await reader.waitClosed());
      conn.close();
    }
  });

  await t.step("a request split across many writes is answered", async () => {
    const { conn, reader } = await connect(port);
    try {
      for (const ch of get("/")) {
        await send(conn, ch);
      }
      assertHello((await reader.read())?.text);
    } finally {
      conn.close();
    }
  });

  await t.step("a malformed request gets 400 and the connection closes", async () => {
    const { conn, reader } = await connect(port);
    try {
      await send(conn, "GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n" + get("/"));
      assert.equal((await reader.read())?.status, 400);
      assert.ok(await reader.waitClosed());
    } finally {
      conn.close();
    }
  });

  await t.step("each request is logged with method, path, status, bytes, time and worker", async () => {
    await request(port, get("/logged-path"));
    const line = await server.waitForLine(/\/logged-path/);
    assert.match(line, /^GET \/logged-path 404 \d+B \d+\.\d{2}ms worker [01]$/);
  });
});
