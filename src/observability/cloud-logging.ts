/**
 * Cloud Logging's structured format for pino: one JSON object per line on stdout, with the fields
 * Cloud Logging's agent lifts into the LogEntry (https://cloud.google.com/logging/docs/structured-logging,
 * "special JSON fields") and those Error Reporting reads
 * (https://cloud.google.com/error-reporting/docs/formatting-error-messages):
 *
 * - `severity`: DEBUG, INFO, WARNING, ERROR or CRITICAL (pino's numeric `level` stays beside it);
 * - `message`: the line's text;
 * - `timestamp`: `{ seconds, nanos }`. Lines written in the same millisecond get increasing nanos,
 *   so Cloud Logging keeps their order without an `insertId` (which must be unique per project);
 * - `logging.googleapis.com/trace` (`projects/<id>/traces/<trace>` when the project is known),
 *   `logging.googleapis.com/spanId` and `logging.googleapis.com/trace_sampled`, from the active span;
 * - `logging.googleapis.com/labels`: chosen bound fields (a job's id, task...), as strings;
 * - `httpRequest`: written by the request log as it is (src/observability/request-log.ts);
 * - on ERROR and CRITICAL lines, `serviceContext` (`service`, `version`) for Error Reporting, the
 *   logged error's stack as `stack_trace`, and a request's `httpRequest` again as Error Reporting's
 *   `context.httpRequest`. Other lines leave them out: Error Reporting groups what carries them.
 *
 * Google's own pino configuration (@google-cloud/pino-logging-gcp-config) writes the same fields,
 * but it imports @google-cloud/logging with gax and gRPC to do so: about 0.5 s and 47 MB at every
 * start of a process that only ever writes to stdout (docs/BENCHMARKS.md, "Lean process").
 */
import { trace } from "./otel-api.ts";
import type { Logger, LoggerOptions } from "pino";

export interface CloudLoggingOptions {
  /** Error Reporting's service context. */
  serviceContext: { service: string; version: string };
  /** Makes the trace field a full Cloud Trace name; without it the bare trace id is written. */
  projectId?: string | undefined;
  /** Bound fields (a child logger's bindings) written as labels, by field name → label name. */
  labels: Readonly<Record<string, string>>;
}

/** Cloud Logging's LogSeverity for each pino level (the mapping Google's pino configuration uses). */
export const SEVERITY_OF_LEVEL: Readonly<Record<string, string>> = {
  trace: "DEBUG",
  debug: "DEBUG",
  info: "INFO",
  warn: "WARNING",
  error: "ERROR",
  fatal: "CRITICAL",
};

const ERROR_LEVEL = 50;

/** The pino options that make its lines Cloud Logging structured entries. */
export function cloudLoggingFormat(options: CloudLoggingOptions): Pick<LoggerOptions, "messageKey" | "timestamp" | "formatters" | "mixin"> {
  const serviceContext = { ...options.serviceContext };
  const tracePrefix = options.projectId ? `projects/${options.projectId}/traces/` : "";
  const labelsOf = makeLabelReader(options.labels);
  return {
    messageKey: "message",
    timestamp: orderedTimestamp,
    formatters: { level: (label, level) => ({ severity: SEVERITY_OF_LEVEL[label] ?? "DEFAULT", level }) },
    mixin(entry, level, logger) {
      const fields: Record<string, unknown> = {};
      const labels = labelsOf(logger);
      if (labels) fields["logging.googleapis.com/labels"] = labels;
      const span = trace.getActiveSpan()?.spanContext();
      if (span && trace.isSpanContextValid(span)) {
        fields["logging.googleapis.com/trace"] = tracePrefix + span.traceId;
        fields["logging.googleapis.com/spanId"] = span.spanId;
        fields["logging.googleapis.com/trace_sampled"] = (span.traceFlags & 1) === 1;
      }
      if (level >= ERROR_LEVEL) {
        fields.serviceContext = serviceContext;
        const { err, httpRequest } = entry as { err?: unknown; httpRequest?: RequestFields };
        if (err instanceof Error && err.stack) fields.stack_trace = err.stack;
        if (httpRequest) fields.context = { httpRequest: errorReportingRequest(httpRequest) };
      }
      return fields;
    },
  };
}

let lastMillis = 0;
let sameMillis = 0;

/** `,"timestamp":{...}` for pino; strictly increasing within a millisecond (up to a million lines). */
function orderedTimestamp(): string {
  const millis = Date.now();
  if (millis === lastMillis) sameMillis = Math.min(sameMillis + 1, 999_999);
  else {
    lastMillis = millis;
    sameMillis = 0;
  }
  return `,"timestamp":{"seconds":${Math.floor(millis / 1000)},"nanos":${(millis % 1000) * 1_000_000 + sameMillis}}`;
}

/**
 * A logger's label fields. pino hands the mixin the child logger, whose bindings never change once
 * made; they are read (pino re-parses them) once per child logger, not once per line.
 */
function makeLabelReader(fieldToLabel: Readonly<Record<string, string>>): (logger: Logger) => Record<string, string> | undefined {
  const cache = new WeakMap<Logger, Record<string, string> | undefined>();
  return (logger) => {
    if (cache.has(logger)) return cache.get(logger);
    const bindings = logger.bindings();
    const labels: Record<string, string> = {};
    let found = false;
    for (const [field, label] of Object.entries(fieldToLabel)) {
      const value = bindings[field];
      if (value === undefined || value === null) continue;
      labels[label] = String(value);
      found = true;
    }
    const result = found ? labels : undefined;
    cache.set(logger, result);
    return result;
  };
}

/** The request log's LogEntry `httpRequest` (see request-log.ts). */
interface RequestFields {
  requestMethod?: string;
  requestUrl?: string;
  status?: number;
  userAgent?: string;
  remoteIp?: string;
}

/** The same request in Error Reporting's HttpRequestContext shape. */
function errorReportingRequest(request: RequestFields): Record<string, unknown> {
  return {
    method: request.requestMethod,
    url: request.requestUrl,
    responseStatusCode: request.status,
    userAgent: request.userAgent,
    remoteIp: request.remoteIp,
  };
}
