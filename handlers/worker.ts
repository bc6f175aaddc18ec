/**
 * The worker module of the server's pool: it parses each request, routes it,
 * and returns the complete response bytes.
 *
 * @module
 */
import { runJobs } from "../pool/worker.ts";
import { handleJob, loadPages } from "./job.ts";
import type { HandlerData, HandlerJob, HandlerResult } from "./mod.ts";
import type { Pages } from "./routes.ts";

let pages: Pages;

runJobs<HandlerJob, HandlerResult, HandlerData>((job, { id, data }) => handleJob(job, id, pages, data.limits), {
  setup: async ({ data }) => {
    pages = await loadPages(data.root);
  },
  transfer: (result) => [result.bytes.buffer as ArrayBuffer],
});
