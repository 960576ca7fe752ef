import { sql } from "kysely";
import { expect } from "vitest";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { API_TOKEN } from "../helpers/app.ts";
import { insertTaxa, resetData, test, testEnvironment, waitFor, type TestEnv } from "../helpers/env.ts";
import { KNOWN_NAMES } from "../../src/demo/fake-gbif.ts";
import { FakeOtlpCollector, SPAN_KIND, type ExportedSpan } from "../helpers/fake-otlp-collector.ts";
import { startChild, type ChildService } from "../helpers/service-process.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

/** The caller's context, as a client that traces (or Cloud Run's front end) sends it. */
const CALLER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN_ID = "b7ad6b7169203331";
const CALLER_HEADERS = {
  traceparent: `00-${CALLER_TRACE_ID}-${CALLER_SPAN_ID}-01`,
  tracestate: "observing=app-7,congo=t61rcWkgMzE",
  baggage: "tenant=observing-app,request.origin=nightly-check",
};

/** The messaging conventions' attributes every job span carries. */
const MESSAGING = { "messaging.system": "graphile_worker", "messaging.destination.name": "resolve_taxa" };

async function withTracedService(env: TestEnv, work: (service: ChildService, collector: FakeOtlpCollector) => Promise<void>): Promise<void> {
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
    await work(service, collector);
  } finally {
    service.kill();
    await service.exited;
    await collector.stop();
  }
}

function attemptSpans(collector: FakeOtlpCollector, traceId: string, count: number): Promise<ExportedSpan[]> {
  return waitFor(
    () => {
      const spans = collector.spans.filter((span) => span.name === "process resolve_taxa" && span.traceId === traceId);
      return spans.length >= count ? spans : undefined;
    },
    { timeoutMs: 20_000, message: `${count} process spans` },
  );
}

test("a job enqueued over HTTP: a producer span in the caller's trace, a consumer span per attempt linked to it, logs with them", async ({ env }) => {
  await withTracedService(env, async (service, collector) => {
    const [taxon] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    // The first attempt meets a GBIF outage, the retry succeeds.
    env.gbif.script("Puma concolor", { status: 503, body: {} }, { body: KNOWN_NAMES["Puma concolor"] });
    const response = await fetch(`${service.baseUrl}/jobs/resolve_taxa`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json", ...CALLER_HEADERS },
      body: JSON.stringify({ taxonIds: [taxon] }),
    });
    expect(response.status).toBe(202);
    const { jobId } = (await response.json()) as { jobId: string };

    const attempts = await attemptSpans(collector, CALLER_TRACE_ID, 2);
    const request = collector.spans.find((span) => span.scope === "@opentelemetry/instrumentation-http" && span.name === "POST /jobs/resolve_taxa")!;
    expect(request).toMatchObject({ kind: SPAN_KIND.server, traceId: CALLER_TRACE_ID, parentSpanId: CALLER_SPAN_ID });
    const handler = collector.spans.find((span) => span.scope === "@fastify/otel" && span.name.startsWith("handler"))!;
    const producer = collector.spans.find((span) => span.name === "send resolve_taxa")!;
    expect(producer).toMatchObject({
      kind: SPAN_KIND.producer,
      traceId: CALLER_TRACE_ID,
      parentSpanId: handler.spanId,
      traceState: CALLER_HEADERS.tracestate,
      attributes: { ...MESSAGING, "messaging.operation.type": "send", "messaging.operation.name": "send", "messaging.message.id": jobId },
    });
    for (const attempt of attempts) {
      expect(attempt).toMatchObject({
        kind: SPAN_KIND.consumer,
        traceId: CALLER_TRACE_ID,
        parentSpanId: producer.spanId,
        traceState: CALLER_HEADERS.tracestate,
        links: [expect.objectContaining({ traceId: CALLER_TRACE_ID, spanId: producer.spanId })],
        attributes: { ...MESSAGING, "messaging.operation.type": "process", "messaging.operation.name": "process", "messaging.message.id": jobId, "job.max_attempts": 8 },
      });
      // Standard names replace the old ones.
      expect(Object.keys(attempt.attributes)).not.toContain("job.id");
      expect(Object.keys(attempt.attributes)).not.toContain("job.task");
    }
    expect(attempts.map((span) => [span.attributes["job.attempt"], span.attributes["job.outcome"], span.attributes["error.type"] ?? null])).toEqual([
      [1, "failed", expect.any(String)],
      [2, "succeeded", null],
    ]);
    // GBIF calls and the job's queries are children of the attempts; the calls carry the caller's
    // tracestate and baggage onwards: the context travelled through the queue whole.
    const gbifCalls = collector.spans.filter((span) => span.scope === "@opentelemetry/instrumentation-undici" && span.traceId === CALLER_TRACE_ID);
    expect(gbifCalls.map((span) => span.parentSpanId).sort()).toEqual(attempts.map((span) => span.spanId).sort());
    expect(collector.spans.some((span) => span.scope === "@opentelemetry/instrumentation-pg" && attempts.some((a) => a.spanId === span.parentSpanId))).toBe(true);
    const outgoing = env.gbif.matchRequests();
    expect(outgoing).toHaveLength(2);
    for (const call of outgoing) {
      expect(call.headers.traceparent).toMatch(new RegExp(`^00-${CALLER_TRACE_ID}-[0-9a-f]{16}-01$`));
      expect(call.headers.tracestate).toBe(CALLER_HEADERS.tracestate);
      expect(new Set(String(call.headers.baggage).split(","))).toEqual(new Set(CALLER_HEADERS.baggage.split(",")));
    }

    // History and logs carry the same trace.
    const details = (await waitFor(async () => {
      const job = await findJob(env.db, jobId);
      return job?.state === "succeeded" ? job : undefined;
    }))!;
    expect(new Set(details.timeline.map((event) => event.trace_id))).toEqual(new Set([CALLER_TRACE_ID]));
    const jobLine = service
      .output()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.message === "resolve taxa: batch done")!;
    expect(jobLine).toMatchObject({
      severity: "INFO",
      "logging.googleapis.com/labels": { job_id: jobId, task: "resolve_taxa", attempt: "2" },
      "logging.googleapis.com/trace": `projects/observing-test/traces/${CALLER_TRACE_ID}`,
      "logging.googleapis.com/spanId": attempts[1]!.spanId,
      "logging.googleapis.com/trace_sampled": true,
    });
    const requestLine = service.output().split("\n").find((line) => line.includes('"requestUrl":"/jobs/resolve_taxa"'))!;
    expect(JSON.parse(requestLine)).toMatchObject({ httpRequest: { requestMethod: "POST", status: 202 }, message: "request completed" });
  });
});

test("a job queued before the carrier object, with a bare traceparent string, still runs in its enqueuer's trace", async ({ env }) => {
  await withTracedService(env, async (_service, collector) => {
    const [taxon] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    env.gbif.script("Puma concolor", { body: KNOWN_NAMES["Puma concolor"] });
    const enqueuedBy = { traceId: "5b8efff798038103d269b633813fc60c", spanId: "eee19b7ec3c1b174" };
    await sql`select graphile_worker.add_job('resolve_taxa', json_build_object('taxonIds', json_build_array(${taxon}::int), '_trace', ${`00-${enqueuedBy.traceId}-${enqueuedBy.spanId}-01`}::text))`.execute(env.db);
    const [attempt] = await attemptSpans(collector, enqueuedBy.traceId, 1);
    expect(attempt).toMatchObject({ kind: SPAN_KIND.consumer, parentSpanId: enqueuedBy.spanId, links: [expect.objectContaining(enqueuedBy)], attributes: MESSAGING });
  });
});
