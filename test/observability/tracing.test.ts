import { expect } from "vitest";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { API_TOKEN } from "../helpers/app.ts";
import { insertTaxa, resetData, test, testEnvironment, waitFor } from "../helpers/env.ts";
import { KNOWN_NAMES } from "../../src/demo/fake-gbif.ts";
import { FakeOtlpCollector } from "../helpers/fake-otlp-collector.ts";
import { startChild } from "../helpers/service-process.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

test("a job enqueued over HTTP runs its attempts in spans of the request's trace, and logs with them", async ({ env }) => {
  const collector = await new FakeOtlpCollector().start();
  const service = startChild(
    ["--import", "./src/observability/instrumentation.ts", "src/main.ts"],
    testEnvironment({
      DATABASE_URL: env.database.url,
      GBIF_BASE_URL: env.gbif.url,
      API_TOKENS: API_TOKEN,
      LOG_LEVEL: "info",
      GOOGLE_CLOUD_PROJECT: "observing-test",
      WORKER_POLL_INTERVAL_MS: "200",
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_BSP_SCHEDULE_DELAY: "100",
    }),
  );
  try {
    await service.waitForStatus("/readyz", 200);
    const [taxon] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    // The first attempt meets a GBIF outage, the retry succeeds.
    env.gbif.script("Puma concolor", { status: 503, body: {} }, { body: KNOWN_NAMES["Puma concolor"] });
    const response = await fetch(`${service.baseUrl}/jobs/resolve_taxa`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ taxonIds: [taxon] }),
    });
    expect(response.status).toBe(202);
    const { jobId } = (await response.json()) as { jobId: string };

    const attempts = await waitFor(
      () => {
        const spans = collector.spans.filter((span) => span.name === "job resolve_taxa");
        return spans.length >= 2 ? spans : undefined;
      },
      { timeoutMs: 20_000, message: "two job attempt spans" },
    );
    const request = collector.spans.find((span) => span.scope === "@opentelemetry/instrumentation-http" && span.name === "POST /jobs/resolve_taxa")!;
    expect(request).toBeDefined();
    const handler = collector.spans.find((span) => span.scope === "@fastify/otel" && span.name.startsWith("handler"))!;
    for (const attempt of attempts) {
      expect(attempt.traceId).toBe(request.traceId);
      expect(attempt.parentSpanId).toBe(handler.spanId);
      expect(attempt.links).toEqual([expect.objectContaining({ traceId: request.traceId, spanId: handler.spanId })]);
      expect(attempt.attributes).toMatchObject({ "job.id": jobId, "job.task": "resolve_taxa", "job.max_attempts": 8 });
    }
    expect(attempts.map((span) => [span.attributes["job.attempt"], span.attributes["job.outcome"]])).toEqual([
      [1, "failed"],
      [2, "succeeded"],
    ]);
    // GBIF calls and the job's queries are children of the attempts.
    const gbifCalls = collector.spans.filter((span) => span.scope === "@opentelemetry/instrumentation-undici" && span.traceId === request.traceId);
    expect(gbifCalls.map((span) => span.parentSpanId).sort()).toEqual(attempts.map((span) => span.spanId).sort());
    expect(collector.spans.some((span) => span.scope === "@opentelemetry/instrumentation-pg" && attempts.some((a) => a.spanId === span.parentSpanId))).toBe(true);

    // History and logs carry the same trace.
    const details = (await waitFor(async () => {
      const job = await findJob(env.db, jobId);
      return job?.state === "succeeded" ? job : undefined;
    }))!;
    expect(new Set(details.timeline.map((event) => event.trace_id))).toEqual(new Set([request.traceId]));
    const jobLine = service
      .output()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.message === "resolve taxa: batch done")!;
    expect(jobLine).toMatchObject({
      severity: "INFO",
      "logging.googleapis.com/labels": { job_id: jobId, task: "resolve_taxa", attempt: "2" },
      "logging.googleapis.com/trace": `projects/observing-test/traces/${request.traceId}`,
      "logging.googleapis.com/spanId": attempts[1]!.spanId,
      "logging.googleapis.com/trace_sampled": true,
    });
    const requestLine = service.output().split("\n").find((line) => line.includes('"requestUrl":"/jobs/resolve_taxa"'))!;
    expect(JSON.parse(requestLine)).toMatchObject({ httpRequest: { requestMethod: "POST", status: 202 }, message: "request completed" });
  } finally {
    service.kill();
    await service.exited;
    await collector.stop();
  }
});
