/**
 * One log line per HTTP request, when it completes, with Cloud Logging's `httpRequest` field so
 * the Logs Explorer shows method, URL, status and latency (and groups the line with its trace), and
 * the authenticated caller, so every acting request says who made it, and what it did (the job it
 * enqueued: `jobId`, `task`; a batch: `task`, `enqueued`). Routes that log at `warn`
 * (health checks) stay quiet unless they fail.
 */
import { LogController, type FastifyReply, type FastifyRequest } from "fastify";

const outcomes = new WeakMap<FastifyRequest, Record<string, unknown>>();

/**
 * What a request did (e.g. the job it enqueued), for its one log line: a line of its own per
 * enqueue was a third of POST /jobs/:task's CPU in a profile (the write to stdout).
 */
export function noteOutcome(request: FastifyRequest, fields: Record<string, unknown>): void {
  outcomes.set(request, fields);
}

export class RequestLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const httpRequest = {
      requestMethod: request.method,
      requestUrl: request.url,
      status: reply.statusCode,
      latency: `${(reply.elapsedTime / 1000).toFixed(6)}s`,
      userAgent: request.headers["user-agent"],
      remoteIp: request.ip,
      protocol: `HTTP/${request.raw.httpVersion}`,
    };
    const caller = (request as FastifyRequest & { caller?: { id: string } | null }).caller?.id;
    const fields = { ...outcomes.get(request), httpRequest, ...(caller ? { caller } : {}) };
    if (error || reply.statusCode >= 500) reply.log.error({ ...fields, err: error }, "request failed");
    else reply.log.info(fields, "request completed");
  }
}
