/**
 * Property-based fuzzing of the whole API from its own OpenAPI document (fast-check): every
 * documented operation gets generated requests, valid and hostile (test/helpers/openapi-fuzz.ts),
 * through one app and one database with `inject`. For every answer: no 5xx, a documented status,
 * the documented media type and a body valid against the document. At the end: nothing was
 * enqueued by any refused request (every job in the database is one an accepted request named).
 *
 * CI runs a fixed seed (FUZZ_SEED, default below) and FUZZ_REQUESTS requests (default 10,000).
 * `npm run fuzz` runs 100,000 with a fresh seed, printed so a failure can be replayed:
 * `FUZZ_SEED=<seed> FUZZ_REQUESTS=<n> npx vitest run test/http/fuzz.test.ts`.
 */
import fc from "fast-check";
import { sql } from "kysely";
import { expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { loadCrontab } from "../../src/cron/crontab.ts";
import { buildApp, type App } from "../../src/http/app.ts";
import { makeQueueStats } from "../../src/lifecycle/queue-stats.ts";
import { makeCronFreshness } from "../../src/cron/freshness.ts";
import { ServiceMetrics } from "../../src/observability/metrics.ts";
import { API_TOKEN } from "../helpers/app.ts";
import { listJobs, resetData, test } from "../helpers/env.ts";
import { fuzzSettings, makeAnswerChecker, requestOf, type FuzzRequest, type OpenApiDocument } from "../helpers/openapi-fuzz.ts";

const { requests: REQUESTS, seed: SEED } = fuzzSettings();
/** What a request may take on a loaded machine, on average, before the run counts as too slow. */
const BUDGET_PER_REQUEST_MS = 15;

let app: App;

test.beforeAll(async ({ env }) => {
  // The service as it runs: queue figures and cron freshness cached as in production (the test
  // environment's own read the database every time). One caller sends everything: the rate limit has its own test.
  const crontab = await loadCrontab(env.config.worker.crontabFile, env.registry);
  const queueStats = makeQueueStats(env.db);
  const cronFreshness = makeCronFreshness(env.db, crontab);
  app = await buildApp({
    config: { auth: { disabled: false, tokens: [API_TOKEN], oidc: null }, http: { ...env.config.http, rateLimit: null } },
    // Warnings and errors only: a line per request, parsed into env.logs, would cost more than the request.
    logger: env.logger.child({}, { level: "warn" }),
    pool: env.pool,
    db: env.db,
    registry: env.registry,
    crontab,
    queueStats,
    cronFreshness,
    metrics: new ServiceMetrics({ queueStats, cronFreshness }),
    worker: { isRunning: () => true },
  });
  await app.ready();
});
test.afterAll(async () => {
  await app.close();
});

test(`${REQUESTS} generated requests across every operation: no 5xx, every answer as documented, nothing enqueued by a refused request`, { timeout: 60_000 + REQUESTS * BUDGET_PER_REQUEST_MS }, async ({ env }) => {
  await resetData(env);
  const document = app.swagger() as unknown as OpenApiDocument;
  const operations = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`));

  // Jobs in every state an action may meet: queued, scheduled, dead.
  const seeded = [
    ...(await Promise.all([1, 2, 3].map((id) => enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [id] })))),
    ...(await Promise.all([4, 5].map((id) => enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [id] }, { runAt: new Date(Date.now() + 86_400_000) })))),
    ...(await Promise.all([6, 7].map((id) => enqueueJob(env.db, env.registry, "refresh_thumbnails", { taxonIds: [id] })))),
  ].map((job) => job.id);
  const dead = seeded.slice(-2);
  await sql`update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'GBIF answered 503' where id = any(${dead}::bigint[])`.execute(env.db);
  await sql`update observing_jobs.job_records set phase = 'dead', attempts = max_attempts, last_error = 'GBIF answered 503', finished_at = now() where id = any(${dead}::bigint[])`.execute(env.db);

  const known: string[] = [...seeded];
  const accepted = new Set<string>(seeded);
  const check = makeAnswerChecker(document);
  const seen = new Map<string, Map<number, number>>(operations.map((operation) => [operation, new Map()]));
  let sent = 0;
  const timing = new Map<string, [number, number]>();

  const started = performance.now();
  await fc.assert(
    fc.asyncProperty(requestOf(document, { token: API_TOKEN, knownIds: () => known }), async (request: FuzzRequest) => {
      sent += 1;
      const t0 = performance.now();
      const response = await app.inject({ method: request.method, url: request.url, headers: request.headers, ...(request.payload === undefined ? {} : { payload: request.payload }) });
      const t1 = performance.now();
      timing.set(request.operation, [(timing.get(request.operation)?.[0] ?? 0) + (t1 - t0), (timing.get(request.operation)?.[1] ?? 0) + 1]);
      const problem = check(request.operation, { statusCode: response.statusCode, headers: response.headers, body: response.body });
      if (problem) throw new Error(`${request.method} ${request.url.length > 300 ? `${request.url.slice(0, 300)}…` : request.url}: ${problem}`);
      const counts = seen.get(request.operation)!;
      counts.set(response.statusCode, (counts.get(response.statusCode) ?? 0) + 1);
      if (response.statusCode === 202) {
        const body = response.json() as { jobId?: string; jobs?: Array<{ jobId: string }> };
        for (const id of body.jobs?.map((job) => job.jobId) ?? [body.jobId!]) {
          if (!accepted.has(id)) known.push(id);
          accepted.add(id);
        }
      }
    }),
    { numRuns: REQUESTS, seed: SEED, endOnFailure: true },
  );
  const seconds = (performance.now() - started) / 1000;
  console.info("TIMING", seconds, [...timing].map(([k, [t, n]]) => `${k}: ${n} x ${(t / n).toFixed(1)}ms = ${(t / 1000).toFixed(1)}s`).join("\n"));

  // Nothing enqueued by a refused request: every job and record is one an accepted request answered with.
  const records = (await env.db.selectFrom("observing_jobs.job_records").select(["id", "task", "payload"]).execute()).map((row) => ({ ...row, id: String(row.id) }));
  const unexplained = records.filter((record) => !accepted.has(record.id));
  expect(unexplained, "job records no accepted request answered with").toEqual([]);
  expect((await listJobs(env.db)).map((job) => String(job.id)).filter((id) => !accepted.has(id))).toEqual([]);

  // Every operation was exercised, and most reached past validation as well as being refused.
  const summary = Object.fromEntries([...seen].map(([operation, counts]) => [operation, Object.fromEntries([...counts].sort(([a], [b]) => a - b))]));
  for (const [operation, counts] of seen) {
    expect([...counts.values()].reduce((sum, n) => sum + n, 0), `${operation} was sent`).toBeGreaterThan(0);
    // Past validation: answered by the handler (a success, or no such job / not in that state).
    expect([...counts.keys()].some((status) => status < 300 || status === 404 || status === 409), `${operation} reached its handler: ${JSON.stringify(summary[operation])}`).toBe(true);
    expect([...counts.keys()].some((status) => status === 400), `${operation} got a 400: ${JSON.stringify(summary[operation])}`).toBe(true);
  }
  console.info(`fuzz: ${sent} requests over ${operations.length} operations in ${seconds.toFixed(1)} s (seed ${SEED}); ${accepted.size - seeded.length} jobs enqueued; statuses ${JSON.stringify(summary)}`);
  expect(sent).toBe(REQUESTS);
});
