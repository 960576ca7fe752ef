/**
 * Job results: what a handler returns is kept with the job's record (redacted, cleaned, bounded),
 * written only when it returns something and only by the attempt that holds the job, and shown by
 * the API and the CLI (the dashboard's job page: test/dashboard/browser.test.ts and pages.test.ts).
 */
import { sql } from "kysely";
import Type from "typebox";
import { describe, expect } from "vitest";
import { runCli } from "../../src/cli.ts";
import { recordResult, resultOf } from "../../src/db/repositories/job-records.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { MAX_RESULT_BYTES, storableResult } from "../../src/lifecycle/results.ts";
import { registerTask, TaskRegistry } from "../../src/registry.ts";
import { defineTask, type TaskResult } from "../../src/task.ts";
import { AUTH, buildTestApp } from "../helpers/app.ts";
import { insertTaxa, resetData, runDueJobs, test, type TestEnv } from "../helpers/env.ts";

/** What `returning_task` returns next (a function, to return values TaskResult does not allow). */
let nextResult: () => unknown = () => undefined;

function registryWithReturningTask(env: TestEnv): TaskRegistry {
  return new TaskRegistry([
    ...env.registry.all(),
    registerTask(
      "returning_task",
      defineTask({
        description: "returns what the test says",
        payload: Type.Object({}),
        sensitive: ["account.key"],
        run: async () => nextResult() as TaskResult,
      }),
    ),
  ]);
}

async function runReturning(env: TestEnv, result: () => unknown) {
  nextResult = result;
  const registry = registryWithReturningTask(env);
  const job = await enqueueJob(env.db, registry, "returning_task", {}, {}, { source: "app" });
  await runDueJobs(env, registry);
  const details = await findJob(env.db, job.id);
  expect(details?.state).toBe("succeeded");
  return details!;
}

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

describe("a resolve_taxa result", () => {
  test("says what each row resolved to, through the API and the CLI", async ({ env }) => {
    const ids = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }, { scientific_name: "Felis concolor" }, { scientific_name: "Fakeus nonexistens" }]);
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: ids }, {}, { source: "app" });
    await runDueJobs(env);

    const expected = {
      requested: 3,
      worked: 3,
      counts: { resolved: 2, no_match: 1 },
      taxa: [
        { id: ids[0], status: "resolved", usageKey: "2435099", acceptedName: "Puma concolor", matchType: "EXACT" },
        { id: ids[1], status: "resolved", usageKey: "2435104", acceptedName: "Puma concolor", matchType: "EXACT" },
        { id: ids[2], status: "no_match", usageKey: null, acceptedName: null, matchType: "NONE" },
      ],
      taxaNotListed: 0,
    };
    const app = await buildTestApp(env);
    let shownByApi: unknown;
    try {
      const response = await app.inject({ url: `/jobs/${job.id}`, headers: AUTH });
      expect(response.statusCode).toBe(200);
      shownByApi = response.json();
      expect(shownByApi).toMatchObject({ state: "succeeded", result: expected });
    } finally {
      await app.close();
    }

    let stdout = "";
    let stderr = "";
    const code = await runCli(["show", job.id], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), loadConfig: () => env.config });
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(stdout)).toMatchObject({ id: job.id, task: "resolve_taxa", state: "succeeded", result: expected });
    // The CLI prints what the API answers.
    expect(JSON.parse(stdout)).toEqual(shownByApi);
  });

  test("lists at most 100 rows and counts the rest", async ({ env }) => {
    const ids = await insertTaxa(env.db, Array.from({ length: 120 }, () => ({ scientific_name: "Puma concolor" })));
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: ids }, {}, { source: "app" });
    await runDueJobs(env);
    const { result } = (await findJob(env.db, job.id))!;
    expect(result).toMatchObject({ requested: 120, worked: 120, counts: { resolved: 120 }, taxaNotListed: 20 });
    expect((result as { taxa: unknown[] }).taxa).toHaveLength(100);
  });
});

describe("observing-jobs show", () => {
  test("names the argument it refuses, and says when there is no such job", async ({ env }) => {
    const run = async (...argv: string[]) => {
      let stderr = "";
      const code = await runCli(argv, { stdout: () => {}, stderr: (t) => (stderr += t), loadConfig: () => env.config });
      return { code, stderr };
    };
    expect(await run("show", "abc")).toMatchObject({ code: 2, stderr: expect.stringContaining("<job id> must be a whole number from 1 to 9223372036854775807, got 'abc'") });
    expect(await run("show")).toMatchObject({ code: 2, stderr: expect.stringContaining("'show' takes exactly one job id, got 0") });
    expect(await run("show", "424242")).toEqual({ code: 1, stderr: "observing-jobs: no job with id 424242\n" });
  });
});

describe("a result that cannot be kept as it is", () => {
  test("an oversize result is kept as a marker, with a warning, and the job still succeeds", async ({ env }) => {
    const job = await runReturning(env, () => ({ rows: "x".repeat(MAX_RESULT_BYTES) }));
    expect(job.result).toEqual({ truncated: true, bytes: MAX_RESULT_BYTES + 11, limit: MAX_RESULT_BYTES });
    expect(env.logs.some((line) => line.severity === "WARNING" && String(line.message).includes(`over the limit of ${MAX_RESULT_BYTES}`))).toBe(true);
  });

  test("a result that is not JSON is kept as a marker and the job still succeeds", async ({ env }) => {
    const job = await runReturning(env, () => ({ count: 1n }));
    expect(job.result).toMatchObject({ truncated: true, reason: expect.stringMatching(/^not JSON: .*BigInt/) });
  });

  test("sensitive and secret-named fields are redacted, as in payloads", async ({ env }) => {
    const job = await runReturning(env, () => ({ account: { key: "k-123", name: "field team" }, apiToken: "t-456", rows: 2 }));
    expect(job.result).toEqual({ account: { key: "[redacted]", name: "field team" }, apiToken: "[redacted]", rows: 2 });
    const { rows } = await sql<{ text: string }>`select result::text as text from observing_jobs.job_records where id = ${job.id}::bigint`.execute(env.db);
    expect(rows[0]!.text).not.toMatch(/k-123|t-456/);
  });

  test("NUL and lone surrogates are cleaned, so jsonb takes the result", async ({ env }) => {
    const job = await runReturning(env, () => ({ note: "a\u0000b", name: "x\ud83dy", "k\u0000ey": 1 }));
    expect(job.result).toEqual({ note: "ab", name: "x\ufffdy", key: 1 });
  });
});

describe("where a result is written", () => {
  test("a task that returns nothing writes no result", async ({ env }) => {
    const job = await runReturning(env, () => undefined);
    expect(job.result).toBeNull();
    const { rows } = await sql<{ result: unknown; result_worker_id: string | null }>`
      select result, result_worker_id from observing_jobs.job_records where id = ${job.id}::bigint`.execute(env.db);
    expect(rows[0]).toEqual({ result: null, result_worker_id: null });
  });

  test("only while the attempt's pool holds the job: a released job takes no result", async ({ env }) => {
    const registry = registryWithReturningTask(env);
    const job = await enqueueJob(env.db, registry, "returning_task", {}, {}, { source: "app" });
    expect(await recordResult(env.db, { jobId: job.id, poolId: "pool-declared-dead", attempt: 1 }, '{"late":true}')).toBe(false);
    await sql`update graphile_worker._private_jobs set locked_by = 'pool-a', locked_at = now(), attempts = 1 where id = ${job.id}::bigint`.execute(env.db);
    expect(await recordResult(env.db, { jobId: job.id, poolId: "pool-b", attempt: 1 }, '{"late":true}')).toBe(false);
    expect(await recordResult(env.db, { jobId: job.id, poolId: "pool-a", attempt: 1 }, '{"mine":true}')).toBe(true);
    // Unlocked again: resetData's complete_jobs leaves locked jobs alone.
    await sql`update graphile_worker._private_jobs set locked_by = null, locked_at = null where id = ${job.id}::bigint`.execute(env.db);
  });

  test("a result is the job's only when the attempt that wrote it is the one that succeeded", () => {
    const record = { phase: "succeeded" as const, result: { n: 1 }, result_worker_id: "pool-a", result_attempt: 1, worker_id: "pool-a", attempts: 1 };
    expect(resultOf(record)).toEqual({ n: 1 });
    // Pool A wrote it, was declared dead before its completion; pool B ran the job again and returned nothing.
    expect(resultOf({ ...record, worker_id: "pool-b" })).toBeNull();
    expect(resultOf({ ...record, attempts: 2 })).toBeNull();
    expect(resultOf({ ...record, phase: "dead" })).toBeNull();
  });

  test("storableResult round-trips through JSON (a Date becomes its text) and keeps small values as they are", () => {
    expect(storableResult({ at: new Date("2026-01-01T00:00:00Z"), n: [1, 2] }, [])).toEqual({ value: { at: "2026-01-01T00:00:00.000Z", n: [1, 2] } });
    expect(storableResult(() => 1, [])).toMatchObject({ value: { truncated: true, reason: "not JSON: a function" } });
  });
});
