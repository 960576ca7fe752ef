/**
 * The service's logger: pino, in Cloud Logging's structured format (src/observability/cloud-logging.ts:
 * `severity`, `message`, the trace fields of the active OpenTelemetry span, Error Reporting's fields
 * on errors), pretty text on a developer's terminal. Job fields become Cloud Logging labels,
 * requests carry `httpRequest`, and graphile-worker's own lines are routed through the same logger.
 */
import { trace } from "./otel-api.ts";
import { Logger as WorkerLogger, type LogFunctionFactory } from "graphile-worker";
import { pino, type Logger } from "pino";
import type { Config } from "../config.ts";
import { cloudLoggingFormat } from "./cloud-logging.ts";

export type { Logger };

/** Field names whose values are replaced, at the top of a log line or one object down (`{ job: { payload } }`). */
const SECRET_FIELDS = ["password", "token", "authorization", "connectionString", "payload"];
const CENSOR = "[redacted]";
/** pino's own redaction: the top level, and the request's credentials. */
const REDACTED_PATHS = [...SECRET_FIELDS, "req.headers.authorization", "req.headers.cookie"];

/**
 * One object down, the same names are replaced here rather than by pino's `*.name` paths: a
 * wildcard path makes pino run its redactor (which parses every path on every call) on every
 * field of every line, 8% of the service's CPU in a drain (docs/BENCHMARKS.md, "Per-job CPU").
 * This looks at each field once. Objects with a secret are copied, prototype and all (an Error
 * stays an Error for its serializer); the caller's are left alone. Accessors are copied, not
 * called (pino's serializer calls them, and writes a field it cannot serialize as such). An object
 * that refuses to be copied (a Proxy whose traps throw) is replaced whole.
 */
function redactOneLevelDown<T extends Record<string, unknown>>(fields: T): T {
  let copy: Record<string, unknown> | undefined;
  for (const key in fields) {
    const value: unknown = fields[key];
    if (value === null || typeof value !== "object" || !SECRET_FIELDS.some((name) => Object.hasOwn(value, name))) continue;
    (copy ??= { ...fields })[key] = censoredCopy(value);
  }
  return (copy ?? fields) as T;
}

function censoredCopy(value: object): object | string {
  try {
    const copy = Object.create(Object.getPrototypeOf(value) as object | null) as object;
    for (const [name, descriptor] of Object.entries(Object.getOwnPropertyDescriptors(value))) {
      if (SECRET_FIELDS.includes(name)) Object.defineProperty(copy, name, { value: CENSOR, enumerable: true, writable: true, configurable: true });
      // An Error's stack is an accessor that reads its own receiver: copied as its value.
      else if (name === "stack") Object.defineProperty(copy, name, { value: (value as { stack?: unknown }).stack, enumerable: descriptor.enumerable ?? false, writable: true, configurable: true });
      else Object.defineProperty(copy, name, descriptor);
    }
    return copy;
  } catch {
    return CENSOR;
  }
}

/** Fields that Cloud Logging indexes as labels (filterable in the Logs Explorer). */
const LABEL_FIELDS = { jobId: "job_id", task: "task", attempt: "attempt", queue: "queue", runner: "worker_pool", workerId: "worker_id" } as const;

export interface LoggerOutput {
  /** Write somewhere else than stdout (tests capture lines this way). */
  destination?: pino.DestinationStream;
  /** The CLI logs to stderr so that stdout carries only its result. */
  toStderr?: boolean;
}

export function makeLogger(options: Config["log"], output: LoggerOutput = {}): Logger {
  const base: pino.LoggerOptions = {
    level: options.level,
    base: { service: "observing-jobs" },
    redact: { paths: REDACTED_PATHS, censor: CENSOR },
    formatters: { log: redactOneLevelDown },
    mixin: traceFields,
  };
  return redactingChildBindings(makePino(options, base, output));
}

/**
 * pino gives a child's bindings no formatter (it resets `formatters.bindings` for children): each
 * child made from this logger, or from one of its children, which inherit the methods, gets its
 * bindings redacted one level down here, and so do bindings set later.
 */
function redactingChildBindings(logger: Logger): Logger {
  const { child, setBindings } = logger;
  logger.child = function (this: Logger, bindings, childOptions) {
    return child.call(this, redactOneLevelDown(bindings), childOptions);
  } as Logger["child"];
  logger.setBindings = function (this: Logger, bindings) {
    setBindings.call(this, redactOneLevelDown(bindings));
  };
  return logger;
}

function makePino(options: Config["log"], base: pino.LoggerOptions, output: LoggerOutput): Logger {
  const fd = output.toStderr ? 2 : 1;
  if (options.format === "pretty" && !output.destination) {
    return pino({
      ...base,
      transport: { target: "pino-pretty", options: { colorize: true, ignore: "pid,hostname,service", destination: fd } },
    });
  }
  const format = cloudLoggingFormat({
    serviceContext: { service: "observing-jobs", version: options.version },
    projectId: options.googleCloudProject,
    labels: LABEL_FIELDS,
  });
  // minLength 1 writes every line as soon as the previous write is done, as the default 0 does, but
  // with 0 sonic-boom's flush(cb) calls back at once instead of after the write in flight: the exit
  // below would not wait, and pino's own flush at exit would write what is buffered ahead of it.
  return pino({ ...base, ...format, formatters: { ...base.formatters, ...format.formatters } }, output.destination ?? pino.destination({ fd, sync: false, minLength: 1 }));
}

/** How long a flush waits at most by default (a reader that stopped reading must not hold a process up). */
const FLUSH_TIMEOUT_MS = 2_000;

/**
 * Resolves once every line logged so far is written out (true), or after `timeoutMs` (false).
 * Lines are written asynchronously: exiting with a write still in flight lets pino's synchronous
 * flush at exit write the lines behind it first, and can lose the one in flight (a service's last
 * lines came out of order under load).
 */
export function flushLogs(logger: Logger, timeoutMs = FLUSH_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    setTimeout(() => resolve(false), timeoutMs).unref();
    // Called back once the destination has drained, with the error of the fsync that follows, which
    // a pipe refuses (EINVAL): the lines are written by then, and that is all this waits for.
    logger.flush(() => resolve(true));
  });
}

/**
 * Gives up what is still buffered for a reader that stopped reading, and what is logged after, as
 * pino does when its reader has gone (EPIPE): pino's flush at exit would otherwise retry such a
 * reader for ever (a file destination), or wait 10 s for its worker (the pretty transport).
 */
export function abandonBufferedLogs(logger: Logger): void {
  const destination = (logger as unknown as Record<symbol, Record<string, unknown> | undefined>)[pino.symbols.streamSym];
  if (!destination) return;
  for (const method of ["write", "flushSync", "end", "destroy"]) if (typeof destination[method] === "function") destination[method] = () => {};
}

/** The exit under way: the code it will exit with, and how to make it exit sooner. */
let exit: { code: number; now(): void } | undefined;

/**
 * Exits with `code` once every line logged so far is written out, or after `timeoutMs`, giving up
 * the rest then (abandonBufferedLogs). A second call while the first waits (a second signal, a
 * missed deadline) makes it exit within its own `timeoutMs`, and a failure's code wins over 0.
 */
export function exitAfterLogs(logger: Logger, code: number, timeoutMs = FLUSH_TIMEOUT_MS): void {
  if (exit) {
    if (code !== 0) exit.code = code;
    process.exitCode = exit.code;
    setTimeout(exit.now, timeoutMs).unref();
    return;
  }
  const pending = {
    code,
    now: () => {
      abandonBufferedLogs(logger);
      process.exit(pending.code);
    },
  };
  exit = pending;
  process.exitCode = code;
  void flushLogs(logger, timeoutMs).then((written) => (written ? process.exit(pending.code) : pending.now()));
}

/** The active span's ids, shown by pino-pretty on a developer's terminal. */
function traceFields(): Record<string, string> {
  const span = trace.getActiveSpan()?.spanContext();
  if (!span || !trace.isSpanContextValid(span)) return {};
  return { trace_id: span.traceId, span_id: span.spanId };
}

/**
 * graphile-worker's Logger interface, writing through our pino logger with its scope as fields.
 * Its line for each finished attempt carries the whole job row (and, on failure, the stack in the
 * message): that line keeps the first line of its message and the job's id, task and attempt, and
 * the row and the error go to a debug line of their own.
 */
export function makeWorkerLogger(logger: Logger): WorkerLogger {
  const factory: LogFunctionFactory = (scope) => {
    // graphile-worker makes a scoped logger for every job, and most never write a line: the pino
    // child (which serializes its bindings when made) is made on first use.
    let child: Logger | undefined;
    return (level, message, meta) => {
      // An attempt a pause kept from starting (src/worker/pause-gate.ts) "fails" only to end it: not an error.
      const held = (meta?.error as { name?: unknown } | undefined)?.name === "JobPausedError";
      const method = held ? "info" : level === "warning" ? "warn" : level === "error" ? "error" : level === "debug" ? "debug" : "info";
      if (!logger.isLevelEnabled(method)) return;
      child ??= logger.child({ component: "graphile-worker", ...scope });
      const job = meta?.job as { id?: unknown; task_identifier?: unknown; attempts?: unknown; max_attempts?: unknown } | undefined;
      if (!job || typeof job !== "object") return void child[method](meta ?? {}, message);
      const { job: row, error, duration, ...rest } = meta!;
      const summary = { ...rest, jobId: String(job.id), task: job.task_identifier, attempt: job.attempts, maxAttempts: job.max_attempts };
      child[method](typeof duration === "number" ? { ...summary, durationMs: Math.round(duration) } : summary, message.split("\n", 1)[0]!.replace(/:$/, ""));
      if (logger.isLevelEnabled("debug")) child.debug({ jobId: String(job.id), job: row, ...(error ? { err: error } : {}) }, "the job row of the line above");
    };
  };
  return new WorkerLogger(factory);
}
