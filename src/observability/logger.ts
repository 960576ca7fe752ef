/**
 * The service's logger: pino, JSON lines in production, pretty text on a developer's terminal.
 * graphile-worker's own log lines are routed through it so every line has one shape.
 */
import { Logger as WorkerLogger, type LogFunctionFactory } from "graphile-worker";
import { pino, type Logger } from "pino";
import type { Config } from "../config.ts";

export type { Logger };

/** Field names whose values are replaced wherever they appear in a log line. */
export const REDACTED_PATHS = [
  "password",
  "token",
  "authorization",
  "connectionString",
  "*.password",
  "*.token",
  "*.authorization",
  "*.connectionString",
  "req.headers.authorization",
  "req.headers.cookie",
];

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
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
  };
  const fd = output.toStderr ? 2 : 1;
  if (output.destination) return pino(base, output.destination);
  if (options.format === "pretty") {
    return pino({
      ...base,
      transport: { target: "pino-pretty", options: { colorize: true, ignore: "pid,hostname,service", destination: fd } },
    });
  }
  return pino(base, pino.destination({ fd, sync: false }));
}

/** graphile-worker's Logger interface, writing through our pino logger with its scope as fields. */
export function makeWorkerLogger(logger: Logger): WorkerLogger {
  const factory: LogFunctionFactory = (scope) => {
    // graphile-worker makes a scoped logger for every job, and most never write a line: the pino
    // child (costly with redaction on: its bindings go through the redactor) is made on first use.
    let child: Logger | undefined;
    return (level, message, meta) => {
      const method = level === "warning" ? "warn" : level === "error" ? "error" : level === "debug" ? "debug" : "info";
      if (!logger.isLevelEnabled(method)) return;
      child ??= logger.child({ component: "graphile-worker", ...scope });
      child[method](meta ?? {}, message);
    };
  };
  return new WorkerLogger(factory);
}
