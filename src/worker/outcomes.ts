/**
 * What a failed attempt means for its job, read from the error and its `cause` chain:
 * - an upstream asked us to back off (429 or 503 with Retry-After, or a client holding calls back
 *   after one): the job waits until then with its attempt given back, however long that is;
 * - no retry can help (PermanentJobError, a payload the task's schema refuses, a non-transient
 *   upstream answer such as a 4xx): the job dies at once with that reason;
 * - anything else: graphile-worker's retry with exponential backoff.
 */
import { InvalidPayloadError } from "../enqueue.ts";
import { PermanentJobError } from "../permanent-failure.ts";
import { UpstreamError } from "../upstream/http.ts";

/** A deferral is at least this long (a Retry-After of 0 must not spin) ... */
export const MIN_DEFERRAL_MS = 1000;
/** ... and at most this long (a Retry-After in weeks is taken as a day; the next answer can ask again). */
export const MAX_DEFERRAL_MS = 24 * 3_600_000;

const CAUSE_DEPTH = 5;

function* causes(error: unknown): Generator<unknown> {
  let current = error;
  for (let depth = 0; depth <= CAUSE_DEPTH && current !== undefined && current !== null; depth++) {
    yield current;
    current = current instanceof Error ? current.cause : undefined;
  }
}

/** The back-off an upstream asked for, clamped to [MIN_DEFERRAL_MS, MAX_DEFERRAL_MS]; undefined when none did. */
export function requestedBackoffMs(error: unknown): number | undefined {
  for (const cause of causes(error)) {
    if (cause instanceof UpstreamError && cause.transient && cause.retryAfterMs !== undefined) {
      return Math.min(MAX_DEFERRAL_MS, Math.max(MIN_DEFERRAL_MS, cause.retryAfterMs));
    }
  }
  return undefined;
}

/** True when no retry can make the job succeed. */
export function isPermanentFailure(error: unknown): boolean {
  for (const cause of causes(error)) {
    if (cause instanceof PermanentJobError || cause instanceof InvalidPayloadError) return true;
    if (cause instanceof UpstreamError) return !cause.transient;
  }
  return false;
}
