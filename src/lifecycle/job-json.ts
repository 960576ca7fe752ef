/**
 * A job as the service shows it outside the process: `GET /jobs/{id}` and `GET /jobs` (whose
 * OpenAPI schemas are src/http/schemas.ts) and `observing-jobs show`, so the API and the CLI print
 * the same fields. Times are RFC 3339 text; the timeline's fields are camelCase.
 */
import type { JobDetails, JobSummary, TimelineEvent } from "./jobs.ts";

/** A job's URL relative to the service. */
export function jobLink(id: string): string {
  return `/jobs/${id}`;
}

const iso = (date: Date) => date.toISOString();
const isoOrNull = (date: Date | null) => (date ? date.toISOString() : null);

export function jobSummaryJson(job: JobSummary) {
  return {
    ...job,
    runAt: iso(job.runAt),
    createdAt: iso(job.createdAt),
    startedAt: isoOrNull(job.startedAt),
    finishedAt: isoOrNull(job.finishedAt),
    links: { self: jobLink(job.id) },
  };
}

export function jobDetailsJson(job: JobDetails) {
  return { ...jobSummaryJson(job), payload: job.payload, result: job.result, timeline: job.timeline.map(timelineEventJson), children: job.children };
}

function timelineEventJson(event: TimelineEvent) {
  return {
    id: event.id,
    event: event.event,
    attempt: event.attempt,
    source: event.source,
    workerId: event.worker_id,
    actor: event.actor,
    error: event.error,
    stack: event.stack,
    durationMs: event.duration_ms,
    runAt: isoOrNull(event.run_at),
    traceId: event.trace_id,
    at: iso(event.at),
  };
}
