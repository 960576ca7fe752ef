/**
 * A job's result: the small JSON value a handler may return, kept with the job's record and shown
 * by `GET /jobs/{id}`, the dashboard's job page and `observing-jobs show`. Stored as payloads are:
 * the task's sensitive fields (and secret-named ones) redacted, NUL and lone surrogates cleaned
 * (jsonb refuses them), and bounded in size. A result that cannot be kept as it is never fails the
 * job (the work is done): a marker saying why takes its place, and a warning is logged.
 */
import type { Db } from "../db/database.ts";
import { recordResult } from "../db/repositories/job-records.ts";
import type { Logger } from "../observability/logger.ts";
import { sanitizeJson } from "../storable-text.ts";
import { redactFields } from "./redaction.ts";

/** The largest result kept, in bytes of its JSON text; a larger one is kept as `{ truncated: true, bytes, limit }`. */
export const MAX_RESULT_BYTES = 16 * 1024;

/** How a result is kept: the value to store, and why it is not the handler's value as returned (if it is not). */
export interface StorableResult {
  value: unknown;
  problem?: string;
}

/** The result as it may be stored: JSON round-tripped, redacted, cleaned and size-bounded. */
export function storableResult(returned: unknown, sensitivePaths: readonly string[]): StorableResult {
  let text: string | undefined;
  try {
    text = JSON.stringify(returned);
  } catch (error) {
    // A cycle or a BigInt: JSON cannot say it.
    const reason = error instanceof Error ? error.message : String(error);
    return { value: { truncated: true, reason: `not JSON: ${reason}` }, problem: `the result is not JSON (${reason})` };
  }
  // A function or a symbol alone: nothing JSON can carry.
  if (text === undefined) return { value: { truncated: true, reason: `not JSON: a ${typeof returned}` }, problem: `the result is not JSON (a ${typeof returned})` };
  const value = sanitizeJson(redactFields(JSON.parse(text) as unknown, sensitivePaths));
  const bytes = Buffer.byteLength(JSON.stringify(value));
  if (bytes > MAX_RESULT_BYTES) {
    return { value: { truncated: true, bytes, limit: MAX_RESULT_BYTES }, problem: `the result is ${bytes} bytes of JSON, over the limit of ${MAX_RESULT_BYTES}` };
  }
  return { value };
}

/**
 * Keeps a successful attempt's result, unless the handler returned nothing (then no statement at
 * all). A failure to write it is logged and the job still succeeds: its work is done and recorded
 * where it belongs; only the summary is missing.
 */
export async function keepResult(
  db: Db,
  logger: Logger,
  attempt: { jobId: string; poolId: string; attempt: number },
  returned: unknown,
  sensitivePaths: readonly string[],
): Promise<void> {
  if (returned === undefined) return;
  const { value, problem } = storableResult(returned, sensitivePaths);
  if (problem) logger.warn({ jobId: attempt.jobId }, `job result kept as a marker: ${problem}`);
  try {
    await recordResult(db, attempt, JSON.stringify(value));
  } catch (error) {
    logger.warn({ err: error, jobId: attempt.jobId }, "could not keep the job's result; the job still succeeds");
  }
}
