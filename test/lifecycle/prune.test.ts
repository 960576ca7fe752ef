import { sql } from "kysely";
import { expect } from "vitest";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { listJobs, performTask, resetData, test, type TestEnv } from "../helpers/env.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

async function seed(env: TestEnv, id: number, phase: string, ageDays: number | null) {
  const finished = ageDays === null ? null : new Date(Date.now() - ageDays * 86_400_000);
  // Created an hour before it finished (jobs that never finished were created long ago too).
  const created = new Date((finished?.getTime() ?? Date.now() - 200 * 86_400_000) - 3_600_000);
  await env.db
    .insertInto("observing_jobs.job_records")
    .values({ id, task: "resolve_taxa", queue: null, source: "app", payload: {}, phase: phase as "succeeded", max_attempts: 1, run_at: new Date(), created_at: created, finished_at: finished })
    .execute();
  await env.db.insertInto("observing_jobs.job_events").values({ job_id: id, task: "resolve_taxa", queue: null, event: "enqueued", attempt: 0 }).execute();
}

test("pruning removes only what is past retention", async ({ env }) => {
  await seed(env, 1001, "succeeded", 20);
  await seed(env, 1002, "succeeded", 3);
  await seed(env, 1003, "cancelled", 15);
  await seed(env, 1004, "discarded", 100);
  await seed(env, 1005, "discarded", 30);
  await seed(env, 1006, "waiting", null);
  await seed(env, 1007, "dead", null);
  // A dead job really in graphile-worker's dead-letter, past the dead retention.
  const { rows } = await sql<{ id: string }>`select id from graphile_worker.add_job('resolve_taxa', '{}'::json, max_attempts => 1)`.execute(env.db);
  const deadId = String(rows[0]!.id);
  await sql`select graphile_worker.permanently_fail_jobs(array[${deadId}::bigint], 'gave up')`.execute(env.db);
  await env.db
    .insertInto("observing_jobs.job_records")
    .values({ id: deadId, task: "resolve_taxa", queue: null, source: "sql", payload: {}, phase: "dead", max_attempts: 1, run_at: new Date(), created_at: new Date(Date.now() - 92 * 86_400_000), finished_at: new Date(Date.now() - 91 * 86_400_000) })
    .onConflict((oc) => oc.column("id").doUpdateSet({ created_at: new Date(Date.now() - 92 * 86_400_000), finished_at: new Date(Date.now() - 91 * 86_400_000) }))
    .execute();

  await performTask(env, "prune_job_history", { batchSize: 2 });

  const left = (await env.db.selectFrom("observing_jobs.job_records").select("id").orderBy("id").execute()).map((row) => String(row.id));
  expect(left).toEqual(["1002", "1005", "1006", "1007"]);
  const events = (await env.db.selectFrom("observing_jobs.job_events").select("job_id").orderBy("job_id").execute()).map((row) => String(row.job_id));
  expect(events).toEqual(["1002", "1005", "1006", "1007"]);
  expect(await listJobs(env.db)).toHaveLength(0);
  expect(await findJob(env.db, deadId)).toBeNull();
});

test("retention comes from the configuration unless the payload overrides it", async ({ env }) => {
  expect(env.config.history).toEqual({ retentionDays: 14, deadRetentionDays: 90 });
  await seed(env, 1001, "succeeded", 2);
  await performTask(env, "prune_job_history", { succeededDays: 1 });
  expect(await env.db.selectFrom("observing_jobs.job_records").select("id").execute()).toHaveLength(0);
});
