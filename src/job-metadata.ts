import type { JobInfo } from "./task.ts";

/**
 * Metadata that rides in a job's payload but is not the task's: graphile-worker's `_cron` on
 * cron-fired jobs, and `_trace` (the enqueuing trace context, see src/observability/tracing.ts).
 */
export function splitJobMetadata(payload: unknown): { payload: unknown; cron?: JobInfo["cron"]; traceparent?: string } {
  if (!payload || typeof payload !== "object" || Array.isArray(payload) || !("_cron" in payload || "_trace" in payload)) return { payload };
  const { _cron, _trace, ...rest } = payload as { _cron?: { ts: string; backfilled?: boolean }; _trace?: unknown };
  return {
    payload: rest,
    ...(_cron ? { cron: { ts: _cron.ts, backfilled: Boolean(_cron.backfilled) } } : {}),
    ...(typeof _trace === "string" ? { traceparent: _trace } : {}),
  };
}
