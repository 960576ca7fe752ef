import { InvalidPayloadError } from "../enqueue.ts";
import { IllegalTransitionError, JobNotFoundError } from "../lifecycle/jobs.ts";
import { UnknownPauseTargetError } from "../lifecycle/pauses.ts";
import { UnknownTaskError } from "../registry.ts";

/** An error whose status code the app's error handler sends as it is (4xx messages are shown to the caller). */
export class HttpError extends Error {
  override name = "HttpError";
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

/**
 * The status an error stands for, for the API's error handler and the dashboard's. The lifecycle
 * and enqueue errors know nothing of HTTP, so they are mapped here, once; an HttpError or a Fastify
 * error carries its own (database errors that mean a bad value become an HttpError 400 through
 * clientErrorOf first); anything else is a 500.
 */
export function statusOf(error: Error & { statusCode?: number }): number {
  if (error instanceof JobNotFoundError || error instanceof UnknownTaskError || error instanceof UnknownPauseTargetError) return 404;
  if (error instanceof IllegalTransitionError) return 409;
  if (error instanceof InvalidPayloadError) return 400;
  return error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
}
