/**
 * Traces across the queue: the trace context of whatever enqueues a job (an HTTP request, a CLI
 * call, application code, a fanning-out job) travels with the job as a W3C `traceparent` under the
 * payload's `_trace` key, and every attempt runs in a span that is that context's child and links
 * to it. A trace then reads "POST /jobs/resolve_taxa → job attempt 1 (failed) → attempt 2 (ok)".
 * Without a registered OpenTelemetry SDK (tracing off) every call here is a cheap no-op.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Span, type SpanContext } from "@opentelemetry/api";
import { SERVICE_VERSION } from "../config.ts";

const tracer = trace.getTracer("observing-jobs", SERVICE_VERSION);
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The active span as a W3C traceparent, to store with a job enqueued now. */
export function currentTraceparent(): string | undefined {
  const span = trace.getActiveSpan();
  if (!span) return undefined;
  const { traceId, spanId, traceFlags } = span.spanContext();
  if (!trace.isSpanContextValid(span.spanContext())) return undefined;
  return `00-${traceId}-${spanId}-${traceFlags.toString(16).padStart(2, "0")}`;
}

export function traceIdOf(traceparent: string | undefined): string | undefined {
  return traceparent ? TRACEPARENT.exec(traceparent)?.[1] : undefined;
}

function parseTraceparent(traceparent: string | undefined): SpanContext | undefined {
  const match = traceparent ? TRACEPARENT.exec(traceparent) : null;
  if (!match) return undefined;
  const context: SpanContext = { traceId: match[1]!, spanId: match[2]!, traceFlags: Number.parseInt(match[3]!, 16) & TraceFlags.SAMPLED, isRemote: true };
  return trace.isSpanContextValid(context) ? context : undefined;
}

export interface AttemptAttributes {
  id: string;
  task: string;
  attempt: number;
  maxAttempts: number;
  queue: string | null;
}

/** Runs one attempt inside its span: child of, and linked to, the context that enqueued the job. */
export function traceJobAttempt<T>(job: AttemptAttributes, traceparent: string | undefined, attempt: (span: Span) => Promise<T>): Promise<T> {
  const enqueuedBy = parseTraceparent(traceparent);
  const parent = enqueuedBy ? trace.setSpanContext(ROOT_CONTEXT, enqueuedBy) : ROOT_CONTEXT;
  const options = {
    kind: SpanKind.CONSUMER,
    links: enqueuedBy ? [{ context: enqueuedBy, attributes: { "job.link": "enqueued_by" } }] : [],
    attributes: {
      "job.id": job.id,
      "job.task": job.task,
      "job.attempt": job.attempt,
      "job.max_attempts": job.maxAttempts,
      ...(job.queue ? { "job.queue": job.queue } : {}),
    },
  };
  return tracer.startActiveSpan(`job ${job.task}`, options, parent, async (span) => {
    try {
      const result = await attempt(span);
      span.setAttribute("job.outcome", "succeeded");
      return result;
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      span.recordException(failure);
      span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
      span.setAttribute("job.outcome", job.attempt >= job.maxAttempts ? "exhausted" : "failed");
      throw error;
    } finally {
      span.end();
    }
  });
}
