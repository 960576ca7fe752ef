/**
 * Property-based fuzzing of the whole API from its own OpenAPI document (fast-check): every
 * documented operation gets generated requests, valid and hostile (test/helpers/openapi-fuzz.ts),
 * through one app and one database with `inject`. For every answer: no 5xx, a documented status,
 * the documented media type and a body valid against the document. At the end: nothing was
 * enqueued by any refused request (every job and record in the database is one an accepted
 * request answered with).
 *
 * `npm test` runs FUZZ_REQUESTS requests (default 10,000) with a fixed seed (FUZZ_SEED, default
 * 1919), the same run every time. `npm run fuzz` runs 100,000 with a fresh seed; the seed is printed,
 * and fast-check's failure message names the counterexample and how to replay it:
 * `FUZZ_SEED=<seed> FUZZ_REQUESTS=<n> npx vitest run test/http/fuzz.test.ts`.
 */
import fc from "fast-check";
import { expect } from "vitest";
import { enqueueJob, enqueueJobs } from "../../src/enqueue.ts";
import type { App } from "../../src/http/app.ts";
import { API_TOKEN, buildTestApp } from "../helpers/app.ts";
import { listJobs, resetData, runDueJobs, test } from "../helpers/env.ts";
import { fuzzSettings, makeAnswerChecker, requestOf, type FuzzRequest, type OpenApiDocument } from "../helpers/openapi-fuzz.ts";
import { makeScript, registryWithTestTasks } from "../helpers/test-tasks.ts";

const { requests: REQUESTS, seed: SEED } = fuzzSettings();
/** What a request may take on a loaded machine, on average, before the run counts as too slow (about 2 ms unloaded). */
const BUDGET_PER_REQUEST_MS = 15;

let app: App;

test.beforeAll(async ({ env }) => {
  app = await buildTestApp(env, {
    // One caller sends everything: the rate limit has its own test (contract.test.ts).
    http: { rateLimit: null },
    // Warnings and errors only: a line per request, parsed into env.logs, would cost more than the request.
    logger: env.logger.child({}, { level: "warn" }),
  });
  await app.ready();
});
test.afterAll(async () => {
  await app.close();
});

test(
  `${REQUESTS} generated requests across every operation: no 5xx, every answer as documented, nothing enqueued by a refused request`,
  { timeout: 60_000 + REQUESTS * BUDGET_PER_REQUEST_MS },
  async ({ env }) => {
    await resetData(env);
    const document = app.swagger() as unknown as OpenApiDocument;
    const operations = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`));

    // Jobs in every state an action may meet: dead (a task that fails its one attempt), queued, scheduled.
    const flaky = registryWithTestTasks(env, { flaky: { ...makeScript(), failures: 1_000 } });
    const dead = await enqueueJobs(env.db, flaky, "flaky_task", [{ label: "dead 1" }, { label: "dead 2" }], { maxAttempts: 1 });
    await runDueJobs(env, flaky);
    const seeded = [
      ...dead,
      ...(await Promise.all([1, 2, 3].map((id) => enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [id] })))),
      ...(await Promise.all([4, 5].map((id) => enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [id] }, { runAt: new Date(Date.now() + 86_400_000) })))),
    ].map((job) => job.id);

    const known: string[] = [...seeded];
    const accepted = new Set<string>(seeded);
    const check = makeAnswerChecker(document);
    const seen = new Map<string, Map<number, number>>(operations.map((operation) => [operation, new Map()]));
    let sent = 0;

    const started = performance.now();
    await fc.assert(
      fc.asyncProperty(requestOf(document, { token: API_TOKEN, knownIds: () => known }), async (request: FuzzRequest) => {
        sent += 1;
        const response = await app.inject({ method: request.method, url: request.url, headers: request.headers, ...(request.payload === undefined ? {} : { payload: request.payload }) });
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
      // No shrinking on a failure: the first counterexample is reported as it was sent.
      { numRuns: REQUESTS, seed: SEED, endOnFailure: true },
    );
    const seconds = (performance.now() - started) / 1000;

    // Nothing enqueued by a refused request: every job and record is one an accepted request answered with.
    const records = await env.db.selectFrom("observing_jobs.job_records").select(["id", "task", "payload"]).execute();
    expect(records.filter((record) => !accepted.has(String(record.id))), "job records no accepted request answered with").toEqual([]);
    expect((await listJobs(env.db)).map((job) => String(job.id)).filter((id) => !accepted.has(id)), "jobs no accepted request answered with").toEqual([]);

    // Every operation was exercised, reached its handler and was refused as well.
    const summary = Object.fromEntries([...seen].map(([operation, counts]) => [operation, Object.fromEntries([...counts].sort(([a], [b]) => a - b))]));
    console.info(
      `fuzz: ${sent} requests over ${operations.length} operations in ${seconds.toFixed(1)} s (seed ${SEED}); ${accepted.size - seeded.length} jobs enqueued; statuses ${JSON.stringify(summary)}`,
    );
    for (const [operation, counts] of seen) {
      // Past validation: answered by the handler (a success, or no such job / not in that state).
      expect([...counts.keys()].some((status) => status < 300 || status === 404 || status === 409), `${operation} reached its handler: ${JSON.stringify(summary[operation])}`).toBe(true);
      expect([...counts.keys()].some((status) => status === 400), `${operation} got a 400: ${JSON.stringify(summary[operation])}`).toBe(true);
    }
    expect(sent).toBe(REQUESTS);
  },
);
