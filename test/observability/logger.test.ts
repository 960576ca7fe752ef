/**
 * The log format against the fields Cloud Logging and Error Reporting document
 * (https://cloud.google.com/logging/docs/structured-logging, special JSON fields;
 * https://cloud.google.com/error-reporting/docs/formatting-error-messages). No database: the
 * logger writes into memory.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { context, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parseConfig } from "../../src/config.ts";
import { makeWorkerLogger } from "../../src/observability/logger.ts";
import { makeCapturingLogger, testEnvironment } from "../helpers/env.ts";

const LOG_SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"];
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID = "00f067aa0ba902b7";

function capture(overrides: Record<string, string> = {}) {
  return makeCapturingLogger(parseConfig(testEnvironment({ LOG_LEVEL: "trace", ...overrides })));
}

/** Runs `work` with a span of the given ids active, as the OpenTelemetry SDK would. */
function inSpan(flags: number, work: () => void): void {
  const span = trace.wrapSpanContext({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: flags });
  context.with(trace.setSpan(ROOT_CONTEXT, span), work);
}

const contextManager = new AsyncLocalStorageContextManager();
beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(() => {
  context.disable();
});

describe("Cloud Logging structured lines", () => {
  test("every pino level maps to a LogSeverity, the text is `message`, pino's numeric level stays", () => {
    const { logger, logs } = capture();
    for (const level of ["trace", "debug", "info", "warn", "error", "fatal"] as const) logger[level](`a ${level} line`);
    expect(logs.map((line) => [line.severity, line.level, line.message])).toEqual([
      ["DEBUG", 10, "a trace line"],
      ["DEBUG", 20, "a debug line"],
      ["INFO", 30, "a info line"],
      ["WARNING", 40, "a warn line"],
      ["ERROR", 50, "a error line"],
      ["CRITICAL", 60, "a fatal line"],
    ]);
    for (const line of logs) {
      expect(LOG_SEVERITIES).toContain(line.severity);
      expect(line).not.toHaveProperty("msg");
    }
  });

  test("the timestamp is { seconds, nanos } of now, and increases within one millisecond", () => {
    const { logger, logs } = capture();
    const before = Date.now();
    for (let i = 0; i < 50; i++) logger.info("burst");
    const after = Date.now();
    const nanos = logs.map((line) => {
      const { seconds, nanos } = line.timestamp as { seconds: number; nanos: number };
      expect(Number.isInteger(seconds) && Number.isInteger(nanos) && nanos >= 0 && nanos < 1e9).toBe(true);
      return BigInt(seconds) * 1_000_000_000n + BigInt(nanos);
    });
    expect(nanos[0]! / 1_000_000n).toBeGreaterThanOrEqual(BigInt(before));
    expect(nanos.at(-1)! / 1_000_000n).toBeLessThanOrEqual(BigInt(after));
    for (let i = 1; i < nanos.length; i++) expect(nanos[i]! > nanos[i - 1]!).toBe(true);
  });

  test("inside a span: the Cloud Trace name, the span id and the sampling decision", () => {
    const { logger, logs } = capture({ GOOGLE_CLOUD_PROJECT: "observing-test" });
    inSpan(TraceFlags.SAMPLED, () => logger.info("sampled"));
    inSpan(TraceFlags.NONE, () => logger.info("not sampled"));
    logger.info("outside");
    expect(logs[0]).toMatchObject({
      "logging.googleapis.com/trace": `projects/observing-test/traces/${TRACE_ID}`,
      "logging.googleapis.com/spanId": SPAN_ID,
      "logging.googleapis.com/trace_sampled": true,
    });
    expect(logs[1]).toMatchObject({ "logging.googleapis.com/trace_sampled": false });
    expect(Object.keys(logs[2]!).filter((key) => key.startsWith("logging.googleapis.com/"))).toEqual([]);
  });

  test("without GOOGLE_CLOUD_PROJECT the trace field is the bare trace id", () => {
    const { logger, logs } = capture();
    inSpan(TraceFlags.SAMPLED, () => logger.info("sampled"));
    expect(logs[0]!["logging.googleapis.com/trace"]).toBe(TRACE_ID);
  });

  test("a job's bound fields become string labels, through graphile-worker's scoped loggers too", () => {
    const { logger, logs } = capture();
    logger.child({ jobId: "42", task: "resolve_taxa", attempt: 2, queue: "gbif" }).info("job line");
    const workerLogger = makeWorkerLogger(logger.child({ runner: "main" }));
    workerLogger.scope({ workerId: "worker-1" }).info("worker line");
    logger.info("plain line");
    expect(logs[0]!["logging.googleapis.com/labels"]).toEqual({ job_id: "42", task: "resolve_taxa", attempt: "2", queue: "gbif" });
    expect(logs[1]!["logging.googleapis.com/labels"]).toEqual({ worker_pool: "main", worker_id: "worker-1" });
    expect(logs[2]).not.toHaveProperty("logging.googleapis.com/labels");
  });

  test("an error line carries Error Reporting's serviceContext, stack_trace and request context", () => {
    const { logger, logs } = capture();
    const error = new Error("GBIF answered 503");
    logger.error({ err: error }, "attempt failed");
    logger.error(new TypeError("bad input"));
    logger.error(
      { httpRequest: { requestMethod: "POST", requestUrl: "/jobs/resolve_taxa", status: 500, userAgent: "curl/8", remoteIp: "10.0.0.1" }, err: error },
      "request failed",
    );
    logger.warn({ err: error }, "will retry");
    expect(logs[0]).toMatchObject({ severity: "ERROR", message: "attempt failed", serviceContext: { service: "observing-jobs", version: expect.any(String) } });
    // Error Reporting reads stack_trace first; Node's stack is one of its supported formats.
    expect(logs[0]!.stack_trace).toBe(error.stack);
    expect(String(logs[0]!.stack_trace)).toMatch(/^Error: GBIF answered 503\n {4}at /);
    expect(logs[1]).toMatchObject({ message: "bad input", stack_trace: expect.stringMatching(/^TypeError: bad input\n/) });
    expect(logs[2]).toMatchObject({
      httpRequest: { requestMethod: "POST", status: 500 },
      context: { httpRequest: { method: "POST", url: "/jobs/resolve_taxa", responseStatusCode: 500, userAgent: "curl/8", remoteIp: "10.0.0.1" } },
    });
    // A warning is not an error event: no service context, no stack_trace for Error Reporting to group.
    expect(logs[3]).not.toHaveProperty("serviceContext");
    expect(logs[3]).not.toHaveProperty("stack_trace");
  });

  test("secrets stay redacted", () => {
    const { logger, logs } = capture();
    logger.child({ token: "secret-token-value" }).info({ payload: { taxonIds: [1] }, authorization: "Bearer x" }, "with secrets");
    expect(JSON.stringify(logs)).not.toMatch(/secret-token-value|Bearer x|taxonIds/);
  });

  test("one object down too, in a line's fields, an error's own properties and a child's bindings; the caller's objects stay as they were", () => {
    const { logger, logs } = capture();
    const job = { id: "7", payload: { taxonIds: [1] } };
    const err = Object.assign(new Error("upstream refused"), { token: "secret-token-value" });
    const database = { connectionString: "postgres://user:secret-password@db/app", pool: 4 };
    logger.child({ database }).error({ job, err, req: { headers: { authorization: "Bearer x", accept: "*/*" } } }, "nested secrets");
    expect(JSON.stringify(logs)).not.toMatch(/secret-token-value|secret-password|Bearer x|taxonIds/);
    expect(logs[0]).toMatchObject({
      job: { id: "7", payload: "[redacted]" },
      database: { connectionString: "[redacted]", pool: 4 },
      err: { type: "Error", message: "upstream refused", stack: expect.stringContaining("upstream refused"), token: "[redacted]" },
      req: { headers: { authorization: "[redacted]", accept: "*/*" } },
      stack_trace: expect.stringContaining("upstream refused"),
    });
    expect([job.payload, err.token, database.connectionString]).toEqual([{ taxonIds: [1] }, "secret-token-value", "postgres://user:secret-password@db/app"]);
  });

  test("bindings set later are redacted too; an accessor is copied, not called, and nothing of a throwing one leaks", () => {
    const { logger, logs } = capture();
    const child = logger.child({ component: "test" });
    child.setBindings({ database: { password: "secret-password" } });
    const holder = Object.defineProperty({ token: "secret-token-value" }, "derived", {
      enumerable: true,
      get() {
        throw new Error("not now");
      },
    });
    child.info({ holder }, "accessors");
    expect(JSON.stringify(logs)).not.toMatch(/secret-token-value|secret-password/);
    expect(logs[0]).toMatchObject({ component: "test", database: { password: "[redacted]" }, message: "accessors" });
  });
});

describe("the last lines before an exit", () => {
  test("are all written, in order, even when the reader is behind: the exit waits for the write in flight", { timeout: 90_000 }, async () => {
    const lines = 5_000; // ~1 MB: more than a pipe or socket holds, so writes are held up until the reader reads
    const child = spawn(process.execPath, [path.join(import.meta.dirname, "../fixtures/logging/log-then-exit.ts"), String(lines)], {
      env: {},
      stdio: ["ignore", "pipe", "pipe"],
    });
    const closed = once(child, "close"); // exited, and its output read to the end
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    // stdout is not read until the child has logged everything and is exiting: a write is in flight then.
    await new Promise<void>((resolve, reject) => {
      child.stderr.on("data", () => stderr.includes("logged\n") && resolve());
      void closed.then(() => reject(new Error(`exited before logging everything: ${stderr}`)));
    });
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    const [code] = await closed;
    expect(code, stderr).toBe(0);
    const seqs = stdout.split("\n").filter(Boolean).map((line) => (JSON.parse(line) as { seq: number }).seq);
    expect(seqs.length).toBe(lines);
    expect(seqs.every((seq, index) => seq === index)).toBe(true);
  });

  test("a reader that never reads holds the exit up for the cap only: what is still buffered is given up", { timeout: 30_000 }, async () => {
    const child = spawn(process.execPath, [path.join(import.meta.dirname, "../fixtures/logging/log-then-exit.ts"), "5000", "300"], { env: {}, stdio: ["ignore", "pipe", "ignore"] });
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(0); // stdout was never read: without giving up, pino's flush at exit retries it for ever
    child.stdout.destroy();
  });

  test("a second exit while the first waits (a second signal) exits within its own time, with its failure code", { timeout: 30_000 }, async () => {
    const began = performance.now();
    const child = spawn(process.execPath, [path.join(import.meta.dirname, "../fixtures/logging/log-then-exit.ts"), "5000", "60000", "300"], { env: {}, stdio: ["ignore", "pipe", "ignore"] });
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(1);
    expect(performance.now() - began).toBeLessThan(20_000); // not the first exit's 60 s
    child.stdout.destroy();
  });
});
