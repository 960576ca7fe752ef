/**
 * The dashboard's own queries stay cheap on a big history: each must be able to use an index
 * (checked on the plan PostgreSQL picks when sequential scans are made unattractive, since on a
 * test-sized table it would rightly scan), and the chart counts what happened in its hour only.
 */
import { describe, expect } from "vitest";
import { countFinishedSince, findRecentOutcomes } from "../../src/http/dashboard/queries/activity.ts";
import { findDeadLetterGroups } from "../../src/http/dashboard/queries/dead-letter.ts";
import { findCronRunTimes } from "../../src/db/repositories/job-records.ts";
import { capture, planOf } from "../helpers/plans.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { resetData, runDueJobs, test } from "../helpers/env.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

describe("the dashboard's queries", () => {
  test("the last-hour chart counts succeeded jobs and failed attempts per 5 minutes, from the outcome counters", async ({ env }) => {
    await enqueueJob(env.db, env.registry, "resolve_taxa", {});
    await runDueJobs(env);
    const minute = (ago: number) => new Date(Math.floor((Date.now() - ago) / 60_000) * 60_000);
    await env.db
      .insertInto("observing_jobs.job_outcome_counts")
      .values([
        { minute: minute(30 * 60_000), shard: 99, succeeded: 0, failed: 1 },
        { minute: minute(2 * 3_600_000), shard: 99, succeeded: 1, failed: 0 },
      ])
      .execute();
    const buckets = await findRecentOutcomes(env.db, new Date());
    expect(buckets).toHaveLength(12);
    expect(buckets.reduce((sum, bucket) => sum + bucket.succeeded, 0)).toBe(1);
    expect(buckets.reduce((sum, bucket) => sum + bucket.failed, 0)).toBe(1);
    expect(buckets.at(-1)!.succeeded).toBe(1);
    expect(buckets[5]!.failed + buckets[6]!.failed).toBe(1);

    const [query] = await capture(env, (db) => findRecentOutcomes(db, new Date()));
    expect(await planOf(env, query!)).toMatch(/job_outcome_counts_pkey/);
  });

  test("jobs finished per state since a time read the counters and the events' time index", async ({ env }) => {
    await enqueueJob(env.db, env.registry, "resolve_taxa", {});
    await runDueJobs(env);
    expect(await countFinishedSince(env.db, new Date(Date.now() - 60_000))).toEqual({ succeeded: 1 });
    const [query] = await capture(env, (db) => countFinishedSince(db, new Date(Date.now() - 60_000)));
    const plan = await planOf(env, query!);
    expect(plan).toMatch(/job_outcome_counts_pkey/);
    expect(plan).toMatch(/job_events_at_idx/);
  });

  test("a schedule's last run and success (cron freshness) read cron_runs by its key; dead-letter groups read graphile-worker's table through an index", async ({ env }) => {
    const [cron] = await capture(env, (db) => findCronRunTimes(db, [{ task: "resolve_taxa", payload: {} }]));
    expect(await planOf(env, cron!)).toMatch(/cron_runs_pkey/);
    const [groups] = await capture(env, (db) => findDeadLetterGroups(db));
    const plan = await planOf(env, groups!);
    expect(plan).toMatch(/Index Scan Backward using \w+ on _private_jobs/);
    expect(plan).not.toMatch(/Seq Scan on _private_jobs/);
  });
});
