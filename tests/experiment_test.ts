// The book's experiment: a slow request holds one worker, never the others.
import assert from "node:assert/strict";
import { get, request, startServer } from "./_server.ts";

Deno.test("with 2 workers and a /sleep in flight, / answers in under a second", async () => {
  await using server = await startServer(["--workers", "2", "--quiet"]);
  const sleeping = request(server.port, get("/sleep"));
  // Let the /sleep reach its worker first.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const start = performance.now();
  const response = await request(server.port, get("/"));
  const elapsed = performance.now() - start;
  assert.equal(response.status, 200);
  assert.ok(elapsed < 1000, `/ took ${elapsed} ms while /sleep ran`);
  assert.equal((await sleeping).status, 200);
});

Deno.test("with N workers, N simultaneous /sleep requests all finish in about 5 s, not N × 5 s", async () => {
  const n = 3;
  await using server = await startServer(["--workers", String(n), "--quiet"]);
  const start = performance.now();
  const responses = await Promise.all(Array.from({ length: n }, () => request(server.port, get("/sleep"))));
  const elapsed = performance.now() - start;
  assert.deepEqual(responses.map((r) => r.status), Array(n).fill(200));
  assert.ok(elapsed >= 4900, `the sleeps ended after ${elapsed} ms, before 5 s`);
  assert.ok(elapsed < 8000, `${n} sleeps took ${elapsed} ms; one after another they take ${n * 5} s`);
});
