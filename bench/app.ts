/**
 * The app every server in the benchmark serves: `/` answers hello.html from
 * memory, `/sleep` blocks its thread for 5 s, `/cpu` burns 2 ms of CPU.
 * It has the `deno serve` shape, so `deno serve` and `webserver --app` run it
 * unchanged.
 *
 * @module
 */

const HELLO = Deno.readFileSync(new URL("../static/hello.html", import.meta.url));
const HTML = { "content-type": "text/html; charset=utf-8" };
const SLEEP_MS = 5000;
const CPU_MS = 2;

function burn(ms: number): number {
  const end = performance.now() + ms;
  let spins = 0;
  while (performance.now() < end) spins++;
  return spins;
}

/** The benchmark app. */
export default {
  fetch(request: Request): Response {
    const path = new URL(request.url).pathname;
    if (path === "/") return new Response(HELLO, { headers: HTML });
    if (path === "/sleep") {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, SLEEP_MS);
      return new Response(HELLO, { headers: HTML });
    }
    if (path === "/cpu") return new Response(`${burn(CPU_MS)} spins\n`);
    return new Response("not found\n", { status: 404 });
  },
};
