import type { TraceCarrier } from "./observability/tracing.ts";
import type { JobInfo } from "./task.ts";

/**
 * Metadata that rides in a job's payload but is not the task's: graphile-worker's `_cron` on
 * cron-fired jobs, and `_trace` (the enqueuing trace context, see src/observability/tracing.ts): a
 * carrier object of propagation fields, or, in jobs enqueued before it was one, a `traceparent` string.
 */
export function splitJobMetadata(payload: unknown): { payload: unknown; cron?: JobInfo["cron"]; traceCarrier?: TraceCarrier } {
  if (!payload || typeof payload !== "object" || Array.isArray(payload) || !("_cron" in payload || "_trace" in payload)) return { payload };
  const { _cron, _trace, ...rest } = payload as { _cron?: { ts: string; backfilled?: boolean }; _trace?: unknown };
  const traceCarrier = carrierOf(_trace);
  return {
    payload: rest,
    ...(_cron ? { cron: { ts: _cron.ts, backfilled: Boolean(_cron.backfilled) } } : {}),
    ...(traceCarrier ? { traceCarrier } : {}),
  };
}

/** Only string fields: whatever else a payload written by hand holds is not a propagation field. */
function carrierOf(stored: unknown): TraceCarrier | undefined {
  if (typeof stored === "string") return { traceparent: stored };
  if (!stored || typeof stored !== "object" || Array.isArray(stored)) return undefined;
  const entries = Object.entries(stored).filter((entry): entry is [string, string] => typeof entry[1] === "string");
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}
