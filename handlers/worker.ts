/**
 * The worker module of the server's pool: it parses each request, routes it,
 * and returns the complete response bytes.
 *
 * @module
 */
import { join } from "node:path";
import { errorResponse, HttpError, parseRequest, serializeResponse } from "../http/mod.ts";
import { runJobs } from "../pool/worker.ts";
import type { HandlerData, HandlerJob, HandlerResult } from "./mod.ts";
import { type Pages, route } from "./routes.ts";

let pages: Pages | undefined;

function handle(job: HandlerJob, workerId: number): HandlerResult {
  let request;
  try {
    request = parseRequest(job.bytes);
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    return { bytes: errorResponse(error.status), status: error.status, workerId, close: true };
  }
  const response = route(request, pages!);
  const bytes = serializeResponse({ ...response, omitBody: request.method === "HEAD", close: job.close });
  return { bytes, status: response.status, workerId, close: job.close };
}

runJobs<HandlerJob, HandlerResult, HandlerData>((job, { id }) => handle(job, id), {
  setup: async ({ data }) => {
    const [hello, notFound] = await Promise.all([
      Deno.readFile(join(data.root, "hello.html")),
      Deno.readFile(join(data.root, "404.html")),
    ]);
    pages = { hello, notFound };
  },
  transfer: (result) => [result.bytes.buffer as ArrayBuffer],
});
