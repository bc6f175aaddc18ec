/**
 * The worker module of the server's pool: it parses each request, answers it
 * from the app, and returns the response bytes.
 *
 * @module
 */
import { runJobs } from "../pool/run_jobs.ts";
import { HANDLER_CODEC, type HandlerData, type HandlerJob, type HandlerResult } from "../exchange/mod.ts";
import { handleJob, setupWorker, type WorkerState } from "./job.ts";

let state: WorkerState;

runJobs<HandlerJob, HandlerResult, HandlerData>((job, { id }, progress) => handleJob(job, id, state, progress), {
  setup: async ({ data, id }) => {
    state = await setupWorker(data, undefined, id);
  },
  transfer: (result) => [result.bytes.buffer as ArrayBuffer],
  codec: HANDLER_CODEC,
});
