/**
 * The admin listener's live page: one self-contained HTML file (its script
 * and style inline, nothing fetched from elsewhere) that reads `/stats` each
 * second. Everything taken from requests is set as text, never as markup.
 *
 * @module
 */

/** The page, as served at the admin listener's `/`. */
export const ADMIN_PAGE: string = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>webserver: the pool at work</title>
<style>
  :root { color-scheme: light dark; font-family: system-ui, sans-serif; }
  body { margin: 1.5rem; max-width: 60rem; }
  h1 { font-size: 1.3rem; margin: 0 0 0.2rem; }
  .sub { color: #777; margin: 0 0 1rem; }
  .cards { display: flex; gap: 0.8rem; flex-wrap: wrap; margin-bottom: 1rem; }
  .card { border: 1px solid #8884; border-radius: 6px; padding: 0.5rem 0.8rem; min-width: 8rem; }
  .card b { display: block; font-size: 1.4rem; }
  table { border-collapse: collapse; width: 100%; margin-bottom: 1rem; }
  th, td { text-align: left; padding: 0.3rem 0.6rem; border-bottom: 1px solid #8883; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state { display: inline-block; padding: 0.05rem 0.5rem; border-radius: 1rem; font-size: 0.85rem; }
  .idle { background: #2a72; } .busy { background: #e803; } .down { background: #d223; }
  svg { width: 100%; height: 140px; border: 1px solid #8884; border-radius: 6px; }
  .legend span { margin-right: 1rem; } .legend i { display: inline-block; width: 0.8rem; height: 0.2rem; vertical-align: middle; margin-right: 0.3rem; }
  #status.bad { color: #d22; }
</style>
</head>
<body>
<h1>webserver: the pool at work</h1>
<p class="sub"><span id="status">connecting…</span></p>
<div class="cards">
  <div class="card">workers busy<b id="busy">–</b></div>
  <div class="card">queue<b id="queue">–</b></div>
  <div class="card">connections<b id="connections">–</b></div>
  <div class="card">requests/s<b id="rps">–</b></div>
  <div class="card">p50 / p99 (1 min)<b id="latency">–</b></div>
</div>
<table>
  <thead><tr><th>worker</th><th>state</th><th class="num">in flight</th><th>oldest request</th><th class="num">age</th><th class="num">served</th><th class="num">restarts</th></tr></thead>
  <tbody id="workers"></tbody>
</table>
<p class="legend"><span><i style="background:#38c"></i>requests/s</span><span><i style="background:#e80"></i>p50 ms</span><span><i style="background:#d22"></i>p99 ms</span> over the last minute</p>
<svg id="chart" viewBox="0 0 600 140" preserveAspectRatio="none" role="img" aria-label="requests per second and latency over the last minute"></svg>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
  return td;
}

function age(ms) {
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s";
}

function renderWorkers(workers) {
  const body = $("workers");
  body.replaceChildren();
  for (const worker of workers) {
    const row = document.createElement("tr");
    row.dataset.worker = String(worker.id);
    cell(row, String(worker.id));
    const state = worker.state !== "ready" ? worker.state : worker.busy ? "busy" : "idle";
    const badge = document.createElement("span");
    badge.className = "state " + (worker.state !== "ready" ? "down" : worker.busy ? "busy" : "idle");
    badge.textContent = state;
    const stateCell = cell(row, "");
    stateCell.append(badge);
    stateCell.dataset.state = state;
    cell(row, String(worker.inflight), "num");
    cell(row, worker.oldest ? worker.oldest.request : "–");
    cell(row, worker.oldest ? age(worker.oldest.ageMs) : "–", "num");
    cell(row, String(worker.served), "num");
    cell(row, String(worker.restarts), "num");
    body.append(row);
  }
}

function line(points, max, color) {
  const path = document.createElementNS(SVG, "polyline");
  const n = points.length;
  path.setAttribute("points", points.map((v, i) => {
    const x = n < 2 ? 0 : (i / (n - 1)) * 600;
    const y = 135 - (v === null ? 0 : (v / max) * 125);
    return x.toFixed(1) + "," + y.toFixed(1);
  }).join(" "));
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", color);
  path.setAttribute("stroke-width", "2");
  return path;
}

function renderChart(recent) {
  const chart = $("chart");
  chart.replaceChildren();
  const counts = recent.map((s) => s.count);
  const p50 = recent.map((s) => s.p50);
  const p99 = recent.map((s) => s.p99);
  const maxCount = Math.max(1, ...counts);
  const maxMs = Math.max(1, ...p99.filter((v) => v !== null));
  chart.append(line(counts, maxCount, "#38c"), line(p50, maxMs, "#e80"), line(p99, maxMs, "#d22"));
}

async function refresh() {
  try {
    const response = await fetch("stats", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const stats = await response.json();
    $("status").textContent = stats.draining ? "draining: finishing what is in flight" : "serving";
    $("status").className = stats.draining ? "bad" : "";
    const ready = stats.workers.filter((w) => w.state === "ready").length;
    $("busy").textContent = stats.workers.filter((w) => w.busy).length + " / " + ready;
    $("queue").textContent = stats.queue.length + " / " + stats.queue.max;
    $("connections").textContent = String(stats.connections);
    // The last whole second: the current one is still filling.
    const last = stats.recent[stats.recent.length - 2] ?? { count: 0 };
    $("rps").textContent = String(last.count);
    const { p50, p99 } = stats.minute;
    const ms = (v) => v < 10 ? v.toFixed(1) : String(Math.round(v));
    $("latency").textContent = p50 === null ? "–" : ms(p50) + " / " + ms(p99) + " ms";
    renderWorkers(stats.workers);
    renderChart(stats.recent);
  } catch (error) {
    $("status").textContent = "cannot reach the server (" + error.message + ")";
    $("status").className = "bad";
  }
}

refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
`;
