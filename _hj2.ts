import { handleJob, setupWorker } from "./handlers/job.ts";
import { DEFAULT_LIMITS } from "./http/mod.ts";
const state = await setupWorker({
  root: "static",
  limits: DEFAULT_LIMITS,
  dotfiles: false,
  dirListing: false,
  cacheControl: "no-cache",
  app: new URL("./bench/app.ts", import.meta.url).href,
});
const plain = await setupWorker({
  root: "static",
  limits: DEFAULT_LIMITS,
  dotfiles: false,
  dirListing: false,
  cacheControl: "no-cache",
});
const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: 127.0.0.1:8123\r\n\r\n");
const job = { bytes, close: false, remote: { hostname: "127.0.0.1", port: 1 } };
const progress = { emit: () => Promise.resolve() };
for (const [name, s] of [["app", state], ["builtin", plain], ["app", state], ["builtin", plain]] as const) {
  const t = performance.now();
  for (let i = 0; i < 100000; i++) await handleJob(job, 0, s, progress);
  console.log(name, ((performance.now() - t) * 1000 / 100000).toFixed(2), "us/job");
}
