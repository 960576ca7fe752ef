/**
 * `POST /jobs/{task}?wait=`: 200 with the job and its result when it ends within the wait, the
 * usual 202 when it does not, 400 for a bad wait; one LISTEN connection for every waiter, a slow
 * poll when it cannot be had, and a caller that goes away ends its wait.
 */
import { sql } from "kysely";
import pg from "pg";
import { describe, expect } from "vitest";
import { JobEndWaits } from "../../src/lifecycle/job-end-waits.ts";
import { JOB_END_WAITS_APPLICATION_NAME } from "../../src/http/routes/jobs.ts";
import { AUTH, buildTestApp } from "../helpers/app.ts";
import { insertTaxa, listJobs, resetData, runDueJobs, test, waitFor, type TestEnv } from "../helpers/env.ts";
import { makeScript, registryWithTestTasks } from "../helpers/test-tasks.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

const json = { ...AUTH, "content-type": "application/json" };

/** Works the queue once `count` jobs are in it (the waiting requests have enqueued them). */
async function workWhenEnqueued(env: TestEnv, count: number, registry = env.registry) {
  await waitFor(async () => (await listJobs(env.db)).length >= count, { message: `${count} job(s) enqueued` });
  await runDueJobs(env, registry);
}

function makeWaits(env: TestEnv, options: { pollIntervalMs?: number; url?: string } = {}) {
  return new JobEndWaits({
    db: env.db,
    logger: env.logger,
    makeClient: () => new pg.Client({ connectionString: options.url ?? env.database.url, application_name: JOB_END_WAITS_APPLICATION_NAME }),
    ...(options.pollIntervalMs ? { pollIntervalMs: options.pollIntervalMs } : {}),
  });
}

describe("POST /jobs/{task}?wait=", () => {
  test("answers 200 with the job and its result when it ends within the wait", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    const app = await buildTestApp(env);
    try {
      const answer = app.inject({ method: "POST", url: "/jobs/resolve_taxa?wait=10s", headers: json, payload: { taxonIds: [id] } });
      await workWhenEnqueued(env, 1);
      const response = await answer;
      expect(response.statusCode).toBe(200);
      const body = response.json();
      expect(response.headers.location).toBe(`/jobs/${body.id}`);
      expect(body).toMatchObject({
        jobId: body.id,
        task: "resolve_taxa",
        state: "succeeded",
        result: { requested: 1, worked: 1, taxa: [{ id, status: "resolved", usageKey: "2435099", acceptedName: "Puma concolor", matchType: "EXACT" }] },
      });
    } finally {
      await app.close();
    }
  });

  test("says when the job ended dead rather than succeeded", async ({ env }) => {
    const flaky = makeScript();
    flaky.failures = 1;
    const registry = registryWithTestTasks(env, { flaky });
    const app = await buildTestApp(env, { registry });
    try {
      const answer = app.inject({ method: "POST", url: "/jobs/flaky_task?maxAttempts=1&wait=10000ms", headers: json, payload: {} });
      await workWhenEnqueued(env, 1, registry);
      const response = await answer;
      expect(response.statusCode).toBe(200);
      expect(response.json()).toMatchObject({ state: "dead", result: null, lastError: expect.stringContaining("scripted failure") });
    } finally {
      await app.close();
    }
  });

  test("answers the usual 202, with the job's state then, when it has not ended within the wait", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const started = Date.now();
      const response = await app.inject({ method: "POST", url: "/jobs/resolve_taxa?wait=1", headers: json, payload: { taxonIds: [1] } });
      expect(Date.now() - started).toBeGreaterThanOrEqual(950);
      expect(response.statusCode).toBe(202);
      expect(response.json()).toMatchObject({ task: "resolve_taxa", state: "queued" });
      expect(response.headers.location).toBe(`/jobs/${response.json().jobId}`);
      // 0 does not wait.
      const now = await app.inject({ method: "POST", url: "/jobs/resolve_taxa?wait=0s", headers: json, payload: { taxonIds: [2] } });
      expect(now.statusCode).toBe(202);
    } finally {
      await app.close();
    }
  });

  test("a wait longer than the request timeout is not cut off by it (that limit is for receiving the request)", async ({ env }) => {
    const app = await buildTestApp(env, { http: { requestTimeoutMs: 1000 } });
    try {
      const url = await app.listen({ host: "127.0.0.1", port: 0 });
      const started = Date.now();
      const response = await fetch(`${url}/jobs/resolve_taxa?wait=2500ms`, { method: "POST", headers: json, body: JSON.stringify({ taxonIds: [1] }) });
      expect(response.status).toBe(202);
      expect(Date.now() - started).toBeGreaterThanOrEqual(2400);
    } finally {
      await app.close();
    }
  });

  test("refuses a bad or too long wait with a 400 naming wait, and enqueues nothing", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      for (const [wait, message] of [
        ["abc", 'querystring/wait must be a duration such as 30s, 1500ms or 30 (seconds), got "abc"'],
        ["-5s", 'querystring/wait must be a duration such as 30s, 1500ms or 30 (seconds), got "-5s"'],
        ["2m", 'querystring/wait must be a duration such as 30s, 1500ms or 30 (seconds), got "2m"'],
        ["61s", 'querystring/wait must be at most 60s, got "61s"'],
        ["60001ms", 'querystring/wait must be at most 60s, got "60001ms"'],
      ]) {
        const response = await app.inject({ method: "POST", url: `/jobs/resolve_taxa?wait=${encodeURIComponent(wait!)}`, headers: json, payload: { taxonIds: [1] } });
        expect({ wait, status: response.statusCode, message: response.json().message }).toEqual({ wait, status: 400, message });
      }
      const tooLong = await app.inject({ method: "POST", url: `/jobs/resolve_taxa?wait=${"1".repeat(17)}`, headers: json, payload: {} });
      expect(tooLong.statusCode).toBe(400);
      expect(tooLong.json().message).toMatch(/wait/);
      expect(await listJobs(env.db)).toHaveLength(0);
    } finally {
      await app.close();
    }
  });

  test("many callers wait at once on one LISTEN connection", async ({ env }) => {
    const jobEnds = makeWaits(env);
    const app = await buildTestApp(env, { jobEnds });
    try {
      const ids = await insertTaxa(env.db, Array.from({ length: 30 }, () => ({ scientific_name: "Puma concolor" })));
      const answers = ids.map((id) => app.inject({ method: "POST", url: "/jobs/resolve_taxa?wait=20s", headers: json, payload: { taxonIds: [id] } }));
      await waitFor(() => jobEnds.waiters === ids.length, { message: "every caller waiting" });
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from pg_stat_activity where application_name = ${JOB_END_WAITS_APPLICATION_NAME} and datname = current_database()`.execute(env.db);
      expect(rows[0]!.n).toBe(1);
      await runDueJobs(env);
      const responses = await Promise.all(answers);
      expect(responses.map((response) => [response.statusCode, response.json().state])).toEqual(ids.map(() => [200, "succeeded"]));
      expect(jobEnds.waiters).toBe(0);
    } finally {
      await app.close();
      await jobEnds.close();
    }
  });

  test("without its LISTEN connection, the slow poll still sees the end", async ({ env }) => {
    // Nothing listens on port 1: the LISTEN connection cannot be opened.
    const jobEnds = makeWaits(env, { url: "postgres://postgres@127.0.0.1:1/none", pollIntervalMs: 100 });
    const app = await buildTestApp(env, { jobEnds });
    try {
      const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
      const answer = app.inject({ method: "POST", url: "/jobs/resolve_taxa?wait=10s", headers: json, payload: { taxonIds: [id] } });
      await workWhenEnqueued(env, 1);
      expect((await answer).statusCode).toBe(200);
    } finally {
      await app.close();
      await jobEnds.close();
    }
  });

  test("closing the app (shutdown) answers waiting callers with their 202 at once", async ({ env }) => {
    const app = await buildTestApp(env);
    const answer = app.inject({ method: "POST", url: "/jobs/resolve_taxa?wait=60s", headers: json, payload: { taxonIds: [1] } });
    await waitFor(async () => (await listJobs(env.db)).length === 1, { message: "the job enqueued" });
    const closing = Date.now();
    await app.close();
    const response = await answer;
    expect(response.statusCode).toBe(202);
    expect(Date.now() - closing).toBeLessThan(10_000);
  });

  test("a lost LISTEN connection is covered by the poll, and opened again", async ({ env }) => {
    const jobEnds = makeWaits(env, { pollIntervalMs: 200 });
    const app = await buildTestApp(env, { jobEnds });
    const listeners = async () => {
      const { rows } = await sql<{ pid: number }>`
        select pid from pg_stat_activity where application_name = ${JOB_END_WAITS_APPLICATION_NAME} and datname = current_database()`.execute(env.db);
      return rows.map((row) => row.pid);
    };
    try {
      const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
      const answer = app.inject({ method: "POST", url: "/jobs/resolve_taxa?wait=20s", headers: json, payload: { taxonIds: [id] } });
      await waitFor(() => jobEnds.waiters === 1, { message: "the caller waiting" });
      const [first] = await waitFor(async () => {
        const pids = await listeners();
        return pids.length === 1 && pids;
      }, { message: "the LISTEN connection" });
      await sql`select pg_terminate_backend(${first!})`.execute(env.db);
      await waitFor(async () => {
        const pids = await listeners();
        return pids.length === 1 && pids[0] !== first;
      }, { message: "the LISTEN connection opened again" });
      await runDueJobs(env);
      expect((await answer).statusCode).toBe(200);
    } finally {
      await app.close();
      await jobEnds.close();
    }
  });

  test("a caller that goes away ends its wait", async ({ env }) => {
    const jobEnds = makeWaits(env);
    const app = await buildTestApp(env, { jobEnds });
    try {
      const url = await app.listen({ host: "127.0.0.1", port: 0 });
      const caller = new AbortController();
      const request = fetch(`${url}/jobs/resolve_taxa?wait=60s`, { method: "POST", headers: json, body: JSON.stringify({ taxonIds: [1] }), signal: caller.signal });
      await waitFor(() => jobEnds.waiters === 1, { message: "the caller waiting" });
      caller.abort();
      await expect(request).rejects.toThrow();
      await waitFor(() => jobEnds.waiters === 0, { message: "the wait ended" });
    } finally {
      await app.close();
      await jobEnds.close();
    }
  });
});
