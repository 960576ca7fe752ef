/**
 * Traces across the queue, in OpenTelemetry's messaging conventions
 * (https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/): enqueueing a job (an HTTP
 * request, a CLI call, application code, a fanning-out job) is a PRODUCER span `send <task>`, whose
 * context (W3C `traceparent`, `tracestate` and `baggage`, or whatever OTEL_PROPAGATORS names) is
 * written with the propagation API into a small carrier object under the payload's `_trace` key.
 * Every attempt runs in a CONSUMER span `process <task>`, child of and linked to that context, with
 * the caller's baggage active. A trace then reads "POST /jobs/resolve_taxa → send resolve_taxa →
 * process resolve_taxa (attempt 1, failed) → process resolve_taxa (attempt 2, ok)".
 *
 * Without a registered OpenTelemetry SDK (tracing off) every call here is a cheap no-op, and no
 * `_trace` is written.
 */
import type { Attributes, Span } from "@opentelemetry/api";
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "./otel-api.ts";
import { SERVICE_VERSION } from "../config.ts";

const tracer = trace.getTracer("observing-jobs", SERVICE_VERSION);

/**
 * Attribute names of the messaging conventions, copied here as OpenTelemetry advises for conventions
 * still in development (the `incubating` entry point of @opentelemetry/semantic-conventions is for
 * reference, not for import). `job.*` carries only what they have no name for.
 */
const MESSAGING = {
  system: "messaging.system",
  operationType: "messaging.operation.type",
  operationName: "messaging.operation.name",
  destination: "messaging.destination.name",
  messageId: "messaging.message.id",
  batchCount: "messaging.batch.message_count",
  errorType: "error.type",
} as const;
/** A messaging system outside the conventions' list of well-known ones goes by its own name. */
const SYSTEM = "graphile_worker";

/** The propagated context of the enqueuer, as stored with the job (`_trace`). */
export type TraceCarrier = Record<string, string>;

export interface EnqueueTrace {
  /** The producer span's context to store with the job; undefined when nothing is propagated (tracing off). */
  carrier: TraceCarrier | undefined;
  /** The trace the job belongs to, for its history rows. */
  traceId: string | undefined;
}

/**
 * Runs one enqueue (`send` returns the job, or the jobs of a batch) in its PRODUCER span and hands it
 * the context to store with the job(s). The span's message id is the job's id; a batch of several
 * gets the batch's size instead, as the conventions ask.
 */
export function traceEnqueue<T extends { id: string } | Array<{ id: string }>>(task: string, send: (trace: EnqueueTrace) => Promise<T>): Promise<T> {
  const attributes: Attributes = {
    [MESSAGING.system]: SYSTEM,
    [MESSAGING.operationType]: "send",
    [MESSAGING.operationName]: "send",
    [MESSAGING.destination]: task,
  };
  return tracer.startActiveSpan(`send ${task}`, { kind: SpanKind.PRODUCER, attributes }, async (span) => {
    try {
      const carrier: TraceCarrier = {};
      propagation.inject(context.active(), carrier);
      const spanContext = span.spanContext();
      const traceId = trace.isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
      const result = await send({ carrier: Object.keys(carrier).length > 0 ? carrier : undefined, traceId });
      const jobs = Array.isArray(result) ? result : [result];
      if (jobs.length === 1) span.setAttribute(MESSAGING.messageId, jobs[0]!.id);
      else span.setAttribute(MESSAGING.batchCount, jobs.length);
      return result;
    } catch (error) {
      fail(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}

export interface AttemptAttributes {
  id: string;
  task: string;
  attempt: number;
  maxAttempts: number;
  queue: string | null;
}

/** Runs one attempt in its CONSUMER span: child of, and linked to, the context that enqueued the job. */
export function traceJobAttempt<T>(job: AttemptAttributes, carrier: TraceCarrier | undefined, attempt: (span: Span) => Promise<T>): Promise<T> {
  const enqueuedIn = carrier ? propagation.extract(ROOT_CONTEXT, carrier) : ROOT_CONTEXT;
  const enqueuedBy = trace.getSpanContext(enqueuedIn);
  const linked = enqueuedBy && trace.isSpanContextValid(enqueuedBy) ? [{ context: enqueuedBy }] : [];
  const options = {
    kind: SpanKind.CONSUMER,
    links: linked,
    attributes: {
      [MESSAGING.system]: SYSTEM,
      [MESSAGING.operationType]: "process",
      [MESSAGING.operationName]: "process",
      [MESSAGING.destination]: job.task,
      [MESSAGING.messageId]: job.id,
      "job.attempt": job.attempt,
      "job.max_attempts": job.maxAttempts,
      ...(job.queue ? { "job.queue": job.queue } : {}),
    },
  };
  return tracer.startActiveSpan(`process ${job.task}`, options, enqueuedIn, async (span) => {
    try {
      const result = await attempt(span);
      span.setAttribute("job.outcome", "succeeded");
      return result;
    } catch (error) {
      fail(span, error);
      span.setAttribute("job.outcome", job.attempt >= job.maxAttempts ? "exhausted" : "failed");
      throw error;
    } finally {
      span.end();
    }
  });
}

function fail(span: Span, error: unknown): void {
  const failure = error instanceof Error ? error : new Error(String(error));
  span.recordException(failure);
  span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
  span.setAttribute(MESSAGING.errorType, failure.name);
}
