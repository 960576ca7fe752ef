/**
 * One log line per HTTP request, when it completes, with Cloud Logging's `httpRequest` field so
 * the Logs Explorer shows method, URL, status and latency (and groups the line with its trace).
 * Routes that log at `warn` (health checks) stay quiet unless they fail.
 */
import { LogController, type FastifyReply, type FastifyRequest } from "fastify";

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
    if (error || reply.statusCode >= 500) reply.log.error({ httpRequest, err: error }, "request failed");
    else reply.log.info({ httpRequest }, "request completed");
  }
}
