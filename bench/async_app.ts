/**
 * The app of the benchmark's async scenario: `/io` awaits a 20 ms timer, as a
 * handler awaiting a database or another service would; `/spin` burns 50 ms
 * of CPU; `/sse` streams 20 server-sent events 100 ms apart, then ends.
 * It has the `deno serve` shape, so `deno serve` and `webserver --app` run it
 * unchanged.
 *
 * @module
 */

// A quick database query or service call.
const IO_MS = 20;
// A heavy request, long enough to hold its thread across many /io requests.
const SPIN_MS = 50;
// 20 events 100 ms apart: each stream stays open about 2 s, so many are open at once.
const SSE_EVENTS = 20;
const SSE_INTERVAL_MS = 100;
const TEXT = { "content-type": "text/plain; charset=utf-8" };
const EVENT_STREAM = { "content-type": "text/event-stream", "cache-control": "no-cache" };

function burn(ms: number): number {
  const end = performance.now() + ms;
  let spins = 0;
  while (performance.now() < end) spins++;
  return spins;
}

// `data: 1` at once, then one event every SSE_INTERVAL_MS until the last, then the end of the body.
function events(): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let sent = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream({
    async pull(controller) {
      if (sent > 0) await new Promise((resolve) => timer = setTimeout(resolve, SSE_INTERVAL_MS));
      controller.enqueue(encoder.encode(`data: ${++sent}\n\n`));
      if (sent === SSE_EVENTS) controller.close();
    },
    // The client left: no more timers for it.
    cancel() {
      clearTimeout(timer);
    },
  });
}

/** The async benchmark app. */
export default {
  async fetch(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (path === "/io") {
      await new Promise((resolve) => setTimeout(resolve, IO_MS));
      return new Response("io\n", { headers: TEXT });
    }
    if (path === "/spin") return new Response(`${burn(SPIN_MS)} spins\n`, { headers: TEXT });
    if (path === "/sse") return new Response(events(), { headers: EVENT_STREAM });
    return new Response("not found\n", { status: 404, headers: TEXT });
  },
};
