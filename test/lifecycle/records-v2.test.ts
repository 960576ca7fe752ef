/**
 * Job records v2 (migration 0008): the record of a job is kept by triggers inside graphile-worker's
 * own statements. Each test reproduces a way v1's buffered history showed wrong state or lost
 * records, and shows it holds now; the last ones pin what the triggers rely on in graphile-worker's
 * private table, so an upgrade that changes it fails here first.
 */
import { sql } from "kysely";
import type pg from "pg";
import { describe, expect } from "vitest";
import { enqueueJob, enqueueJobs } from "../../src/enqueue.ts";
import { cancelJob, findJob, findJobByKey, listJobs } from "../../src/lifecycle/jobs.ts";
import { makeCronFreshness } from "../../src/cron/freshness.ts";
import { checkCrontab } from "../../src/cron/crontab.ts";
import { listJobs as listLiveJobs, performTask, resetData, runDueJobs, test, waitFor, type TestEnv } from "../helpers/env.ts";
import { capture, planOf } from "../helpers/plans.ts";
import { makeScript, registryWithTestTasks } from "../helpers/test-tasks.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

async function recordOf(env: TestEnv, id: string) {
  return env.db.selectFrom("observing_jobs.job_records").selectAll().where("id", "=", id).executeTakeFirst();
}

describe("records kept by graphile-worker's own statements", () => {
  test("a succeeded job costs the service one insert and one HOT update, and no event rows", async ({ env }) => {
    // A task that returns nothing (as the benchmark's no-op): a result would cost one more update (below).
    const registry = registryWithTestTasks(env, { flaky: makeScript() });
    const jobs = await enqueueJobs(env.db, registry, "flaky_task", Array.from({ length: 50 }, () => ({})));
    const before = await tableStats(env);
    await runDueJobs(env, registry);
    const after = await waitFor(async () => {
      const stats = await tableStats(env);
      return stats.updates - before.updates >= 50 && stats;
    }, { message: "the statistics collector to report the records' updates" });
    for (const job of jobs) expect(await recordOf(env, job.id)).toMatchObject({ phase: "succeeded", attempts: 1 });
    expect(await env.db.selectFrom("observing_jobs.job_events").select("id").execute()).toEqual([]);
    expect(after.updates - before.updates).toBe(50);
    // HOT: no index covers what the end of an attempt changes, and the fillfactor leaves each page room for it.
    expect(after.hotUpdates - before.hotUpdates).toBe(50);
  });

  test("a job that returns a result costs one more update", async ({ env }) => {
    // A sweep with nothing due returns { sweep: "nothing_due" }: written just before graphile-worker's completion.
    const jobs = await enqueueJobs(env.db, env.registry, "resolve_taxa", Array.from({ length: 50 }, () => ({})));
    const before = await tableStats(env);
    await runDueJobs(env);
    const after = await waitFor(async () => {
      const stats = await tableStats(env);
      return stats.updates - before.updates >= 100 && stats;
    }, { message: "the statistics collector to report the records' updates" });
    for (const job of jobs) expect(await findJob(env.db, job.id)).toMatchObject({ state: "succeeded", result: { sweep: "nothing_due" } });
    expect(after.updates - before.updates).toBe(100);
    // Mostly HOT, not always: a record then has three versions before pruning can reclaim the first,
    // which waits for other transactions' snapshots (measured: 93 to 100 of these 100). Not asserted.
  });

  test("a batched completion of many pages of records in one statement keeps every update HOT", async ({ env }) => {
    // graphile-worker's batched completion deletes many jobs in one statement, so every record of a
    // page grows (started_at, finished_at, worker_id) in one transaction, before pruning can reclaim
    // anything: the fillfactor must leave room for a whole page of grown rows.
    const count = 600;
    const jobs = await enqueueJobs(env.db, env.registry, "resolve_taxa", Array.from({ length: count }, () => ({})));
    const ids = jobs.map((job) => job.id);
    const before = await tableStats(env);
    await sql`
      update graphile_worker._private_jobs set locked_at = now(), locked_by = 'pool-' || md5(id::text), attempts = 1
      where id = any(${ids}::bigint[])`.execute(env.db);
    await sql`delete from graphile_worker._private_jobs where id = any(${ids}::bigint[])`.execute(env.db);
    const after = await waitFor(async () => {
      const stats = await tableStats(env);
      return stats.updates - before.updates >= count && stats;
    }, { message: "the statistics collector to report the records' updates" });
    expect(after.updates - before.updates).toBe(count);
    expect(after.hotUpdates - before.hotUpdates).toBe(count);
  });

  test("a batched completion of jobs added by plain SQL writes every missing record, notes the cron run and counts each success once", async ({ env }) => {
    // One completion statement over jobs with records (enqueued through the service), jobs without
    // (plain SQL: their records are written by the completion, in one insert) and one cron job.
    const recorded = await enqueueJobs(env.db, env.registry, "resolve_taxa", Array.from({ length: 200 }, (_, i) => ({ limit: i + 1 })));
    const { rows: added } = await sql<{ id: string }>`
      select id from graphile_worker.add_jobs(array(
        select json_populate_record(null::graphile_worker.job_spec, json_build_object('identifier', 'resolve_taxa', 'payload', json_build_object('limit', i), 'queue_name', case when i % 2 = 0 then 'sql-queue' end))
        from generate_series(1, 300) i))`.execute(env.db);
    const { rows: cron } = await sql<{ id: string }>`
      select id from graphile_worker.add_job('prune_job_history', '{"_cron": {"ts": "2026-12-03T03:00:00Z", "backfilled": false}}'::json)`.execute(env.db);
    const sqlIds = [...added.map((row) => String(row.id)), String(cron[0]!.id)];
    const ids = [...recorded.map((job) => job.id), ...sqlIds];
    const countedBefore = Number((await sql<{ n: string }>`select coalesce(sum(succeeded), 0) as n from observing_jobs.job_outcome_counts`.execute(env.db)).rows[0]!.n);
    await sql`
      update graphile_worker._private_jobs set locked_at = now(), locked_by = 'pool-sql-batch', attempts = 1
      where id = any(${ids}::bigint[])`.execute(env.db);
    await sql`delete from graphile_worker._private_jobs where id = any(${ids}::bigint[])`.execute(env.db);

    const records = await env.db.selectFrom("observing_jobs.job_records").selectAll().where("id", "in", ids).execute();
    expect(records).toHaveLength(ids.length);
    expect(records.every((record) => record.phase === "succeeded" && record.attempts === 1 && record.worker_id === "pool-sql-batch" && record.finished_at !== null)).toBe(true);
    const byId = new Map(records.map((record) => [String(record.id), record]));
    expect(sqlIds.slice(0, -1).map((id) => byId.get(id)!.source)).toEqual(Array(300).fill("sql"));
    // What insert_missing_record wrote for one job, column for column: task, queue, payload, times.
    expect(byId.get(sqlIds[1]!)).toMatchObject({ task: "resolve_taxa", queue: "sql-queue", payload: { limit: 2 }, max_attempts: 25, job_key: null });
    expect(byId.get(sqlIds[0]!)).toMatchObject({ queue: null, payload: { limit: 1 } });
    expect(byId.get(sqlIds[1]!)!.started_at).not.toBeNull();
    expect(byId.get(sqlIds.at(-1)!)).toMatchObject({ task: "prune_job_history", source: "cron", payload: { _cron: { ts: "2026-12-03T03:00:00Z", backfilled: false } } });
    const cronRun = await env.db.selectFrom("observing_jobs.cron_runs").selectAll().where("task", "=", "prune_job_history").executeTakeFirstOrThrow();
    expect(cronRun).toMatchObject({ payload: {}, last_success_job_id: String(cron[0]!.id) });
    const countedAfter = Number((await sql<{ n: string }>`select coalesce(sum(succeeded), 0) as n from observing_jobs.job_outcome_counts`.execute(env.db)).rows[0]!.n);
    expect(countedAfter - countedBefore).toBe(ids.length);
  });

  test("in one completion with stale locks and a recorded cron job, a plain-SQL job's record is its row column for column", async ({ env }) => {
    const trace = { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" };
    const addBySql = async (task: string, payload: unknown, options: { queue?: string; key?: string; priority?: number } = {}) =>
      String(
        (
          await sql<{ id: string }>`select id from graphile_worker.add_job(${task}, ${JSON.stringify(payload)}::json,
            queue_name => ${options.queue ?? null}::text, job_key => ${options.key ?? null}::text, priority => ${options.priority ?? null}::int,
            run_at => '2026-12-01T10:00:00Z'::timestamptz)`.execute(env.db)
        ).rows[0]!.id,
      );
    // A plain-SQL job on its second attempt (the first failed), keyed, queued, prioritised, traced.
    const plain = await addBySql("resolve_taxa", { kingdom: "Fungi", _trace: trace }, { queue: "sql-queue", key: "sql-key", priority: 7 });
    await sql`update graphile_worker._private_jobs set attempts = 2, last_error = 'GBIF answered 503' where id = ${plain}::bigint`.execute(env.db);
    // Stale locks (older than graphile-worker's 4 hours): removals, not completions.
    const staleUnrecorded = await addBySql("resolve_taxa", { limit: 1 });
    const staleRecorded = (await enqueueJob(env.db, env.registry, "resolve_taxa", { limit: 2 })).id;
    // A cron job whose record exists already: counted by the update, its run still noted.
    const cron = await addBySql("prune_job_history", { _cron: { ts: "2026-12-03T04:00:00Z", backfilled: false } });
    await sql`select observing_jobs.insert_missing_record(j, 'waiting') from graphile_worker._private_jobs j where j.id = ${cron}::bigint`.execute(env.db);
    await sql`update graphile_worker._private_jobs set locked_at = now() - interval '1 minute', locked_by = 'pool-mixed', attempts = attempts + 1
      where id = any(${[plain, cron]}::bigint[])`.execute(env.db);
    await sql`update graphile_worker._private_jobs set locked_at = now() - interval '5 hours', locked_by = 'pool-gone', attempts = 1
      where id = any(${[staleUnrecorded, staleRecorded]}::bigint[])`.execute(env.db);
    const { rows: before } = await sql<{ id: string; priority: number; attempts: number; max_attempts: number; key: string; run_at: Date; last_error: string; created_at: Date; locked_at: Date; locked_by: string }>`
      select id::text, priority, attempts, max_attempts, key, run_at, last_error, created_at, locked_at, locked_by from graphile_worker._private_jobs where id = ${plain}::bigint`.execute(env.db);
    const row = before[0]!;
    const countedBefore = Number((await sql<{ n: string }>`select coalesce(sum(succeeded), 0) as n from observing_jobs.job_outcome_counts`.execute(env.db)).rows[0]!.n);

    await sql`delete from graphile_worker._private_jobs where id = any(${[plain, staleUnrecorded, staleRecorded, cron]}::bigint[])`.execute(env.db);

    const record = await recordOf(env, plain);
    expect(record).toMatchObject({
      task: "resolve_taxa", queue: "sql-queue", source: "sql", payload: { kingdom: "Fungi" }, phase: "succeeded",
      priority: row.priority, attempts: 3, max_attempts: row.max_attempts, job_key: "sql-key", last_error: "GBIF answered 503", worker_id: "pool-mixed",
    });
    expect(record!.payload).toEqual({ kingdom: "Fungi" }); // the trace context is the job's, not its payload
    expect(row.priority).toBe(7);
    expect([record!.run_at, record!.created_at, record!.started_at].map((at) => at && new Date(at).getTime())).toEqual([row.run_at, row.created_at, row.locked_at].map((at) => at.getTime()));
    expect(record!.finished_at).not.toBeNull();
    expect(await recordOf(env, staleUnrecorded)).toBeUndefined();
    expect(await recordOf(env, staleRecorded)).toMatchObject({ phase: "cancelled" });
    expect(await recordOf(env, cron)).toMatchObject({ phase: "succeeded", source: "cron", attempts: 1 });
    const cronRun = await env.db.selectFrom("observing_jobs.cron_runs").selectAll().where("task", "=", "prune_job_history").executeTakeFirstOrThrow();
    expect(cronRun.last_success_job_id).toBe(cron);
    const countedAfter = Number((await sql<{ n: string }>`select coalesce(sum(succeeded), 0) as n from observing_jobs.job_outcome_counts`.execute(env.db)).rows[0]!.n);
    expect(countedAfter - countedBefore).toBe(2); // the plain-SQL job and the cron job; stale locks are no successes
  });

  test("a session that completed its first batch on an empty history finds later batches' records by id, not by reading the history", async ({ env }) => {
    // plpgsql keeps a statement's plan for the session. 0020's joins, planned on the empty history
    // (a new deployment), read all of job_records for every batch after (migration 0021).
    const addBySql = async (db: pg.PoolClient, count: number) =>
      (
        await db.query<{ id: string }>(
          `select id::text from graphile_worker.add_jobs(array(
             select json_populate_record(null::graphile_worker.job_spec, json_build_object('identifier', 'resolve_taxa', 'payload', json_build_object('limit', i)))
             from generate_series(1, $1::int) i))`,
          [count],
        )
      ).rows.map((row) => row.id);
    const session = await env.pool.connect();
    try {
      // This session's scans of job_records not yet flushed to the statistics (earlier transactions' included): a difference around the delete.
      const scans = async () => {
        const { rows } = await session.query<{ seq: string; idx: string }>(
          "select seq_scan::text as seq, idx_scan::text as idx from pg_stat_xact_user_tables where schemaname = 'observing_jobs' and relname = 'job_records'",
        );
        return { sequential: Number(rows[0]?.seq ?? 0), index: Number(rows[0]?.idx ?? 0) };
      };
      const deleteCounted = async (ids: string[]) => {
        await session.query("begin");
        const before = await scans();
        await session.query("delete from graphile_worker._private_jobs where id = any($1::bigint[])", [ids]);
        const after = await scans();
        await session.query("commit");
        return { sequentialScans: after.sequential - before.sequential, indexScans: after.index - before.index };
      };
      const complete = async (ids: string[]) => {
        await session.query("update graphile_worker._private_jobs set locked_at = now(), locked_by = 'pool-plan', attempts = 1 where id = any($1::bigint[])", [ids]);
        return await deleteCounted(ids);
      };
      // The first batch: its record statements are planned now, on an empty job_records.
      await complete(await addBySql(session, 2));
      await sql`
        insert into observing_jobs.job_records (id, task, source, payload, phase, max_attempts, run_at, created_at, finished_at)
        select -n, 'resolve_taxa', 'app', '{}', 'succeeded', 25, now(), now(), now() from generate_series(1, 20000) n`.execute(env.db);
      // Later batches of the same session: jobs added by SQL (records inserted), jobs with records (updated), removals.
      const sqlJobs = await addBySql(session, 100);
      const recorded = (await enqueueJobs(env.db, env.registry, "resolve_taxa", Array.from({ length: 100 }, (_, i) => ({ limit: i + 1 })))).map((job) => job.id);
      const completed = await complete([...sqlJobs, ...recorded]);
      expect(completed.sequentialScans).toBe(0);
      expect(completed.indexScans).toBeGreaterThan(0);
      // A removal (remove_job, complete_jobs: waiting jobs deleted by someone else) after the history grew.
      const removed = (await enqueueJobs(env.db, env.registry, "resolve_taxa", Array.from({ length: 50 }, (_, i) => ({ limit: i + 1 })))).map((job) => job.id);
      expect((await deleteCounted(removed)).sequentialScans).toBe(0);
      const phases = await env.db.selectFrom("observing_jobs.job_records").select(["phase", (eb) => eb.fn.countAll<string>().as("n")]).where("id", ">", "0").groupBy("phase").orderBy("phase").execute();
      expect(phases.map((row) => [row.phase, Number(row.n)])).toEqual([["cancelled", 50], ["succeeded", 202]]);
    } finally {
      session.release();
    }
  });

  test("payloads that are not objects are recorded as they are, at completion and at a failed attempt, with or without a record", async ({ env }) => {
    // graphile-worker takes any JSON; only an object has a trace context to take out.
    const payloads = ['"a string"', "42", "null", '["_trace", 1]', '{"_trace": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "kept": true}', '"_cron"', '["_cron", 1]'];
    const addAll = async () => {
      const ids: string[] = [];
      for (const payload of payloads) ids.push(String((await sql<{ id: string }>`select id from graphile_worker.add_job('prune_job_history', ${payload}::json)`.execute(env.db)).rows[0]!.id));
      return ids;
    };
    const stored = [JSON.parse(payloads[0]!), 42, null, ["_trace", 1], { kept: true }, "_cron", ["_cron", 1]];
    const lock = (ids: string[]) => sql`update graphile_worker._private_jobs set locked_at = now(), locked_by = 'pool-scalar', attempts = attempts + 1 where id = any(${ids}::bigint[])`.execute(env.db);
    const payloadsOf = async (ids: string[]) => Promise.all(ids.map(async (id) => (await recordOf(env, id))?.payload));
    // Completed, without records (added by SQL) and with them (as the service's enqueue leaves them), in one batch.
    const bare = await addAll();
    const recorded = await addAll();
    await sql`select observing_jobs.insert_missing_record(j, 'waiting') from graphile_worker._private_jobs j where j.id = any(${recorded}::bigint[])`.execute(env.db);
    await lock([...bare, ...recorded]);
    await sql`delete from graphile_worker._private_jobs where id = any(${[...bare, ...recorded]}::bigint[])`.execute(env.db);
    for (const ids of [bare, recorded]) {
      expect(await payloadsOf(ids)).toEqual(stored);
      for (const id of ids) expect(await recordOf(env, id)).toMatchObject({ phase: "succeeded", attempts: 1 });
    }
    // A failed first attempt of jobs added by SQL: graphile-worker's failure statement writes their records.
    const failing = await addAll();
    await lock(failing);
    await sql`update graphile_worker._private_jobs set locked_at = null, locked_by = null, last_error = 'failed', run_at = now() + interval '1 minute' where id = any(${failing}::bigint[])`.execute(env.db);
    expect(await payloadsOf(failing)).toEqual(stored);
    for (const id of failing) expect(await recordOf(env, id)).toMatchObject({ phase: "waiting", attempts: 1, last_error: "failed" });
    // Only an object with a `_cron` key is a cron job's: the string "_cron" and an array holding it are not.
    for (const id of [...bare, ...recorded, ...failing]) expect((await recordOf(env, id))?.source).toBe("sql");
    expect(await env.db.selectFrom("observing_jobs.cron_runs").selectAll().execute()).toEqual([]);
  });

  test("a job whose task row is gone still gets its record, at a failed attempt and at completion", async ({ env }) => {
    const add = async () => String((await sql<{ id: string }>`select id from graphile_worker.add_job('orphaned_task', '{}'::json)`.execute(env.db)).rows[0]!.id);
    const [failing, completing] = [await add(), await add()];
    const { rows } = await sql<{ id: number }>`select id from graphile_worker._private_tasks where identifier = 'orphaned_task'`.execute(env.db);
    await sql`update graphile_worker._private_jobs set locked_at = now(), locked_by = 'pool-orphan', attempts = 1 where id = any(${[failing, completing]}::bigint[])`.execute(env.db);
    await sql`delete from graphile_worker._private_tasks where identifier = 'orphaned_task'`.execute(env.db);
    await sql`update graphile_worker._private_jobs set locked_at = null, locked_by = null, last_error = 'failed', run_at = now() + interval '1 minute' where id = ${failing}::bigint`.execute(env.db);
    await sql`delete from graphile_worker._private_jobs where id = ${completing}::bigint`.execute(env.db);
    const task = `unknown task ${rows[0]!.id}`;
    expect(await recordOf(env, failing)).toMatchObject({ task, phase: "waiting", last_error: "failed" });
    expect(await recordOf(env, completing)).toMatchObject({ task, phase: "succeeded" });
  });

  test("a job added by plain SQL with NUL in its payload is recorded, and blocks no other job's record", async ({ env }) => {
    const { rows } = await sql<{ id: string }>`
      select id from graphile_worker.add_job('resolve_taxa', '{"kingdom": "Plan\\u0000tae", "note": "a\\u0000b"}'::json)`.execute(env.db);
    const poisoned = String(rows[0]!.id);
    const other = await enqueueJob(env.db, env.registry, "resolve_taxa", {});
    // The payload fails resolve_taxa's schema: no retry can help, so its first failure is its last.
    await runDueJobs(env);
    expect(await recordOf(env, other.id)).toMatchObject({ phase: "succeeded" });
    const record = await recordOf(env, poisoned);
    expect(record).toMatchObject({ source: "sql", phase: "dead", attempts: 1, max_attempts: 1 });
    expect(record!.payload).toEqual({ kingdom: "Plantae", note: "ab" });
  });

  test("a keyed job replaced while it runs ends dead when that attempt fails, with its hook run once", async ({ env }) => {
    const script = { ...makeScript(), failures: 1, workMs: 400 };
    const registry = registryWithTestTasks(env, { flaky: script });
    const job = await enqueueJob(env.db, registry, "flaky_task", {}, { jobKey: "replace-me" });
    const running = runDueJobs(env, registry);
    await waitFor(async () => (await listLiveJobs(env.db, "flaky_task")).some((row) => row.locked_by !== null), { message: "the job to start" });
    // The same key enqueued again while the attempt runs: graphile-worker gives the running job up.
    const replacement = await enqueueJob(env.db, registry, "flaky_task", {}, { jobKey: "replace-me" });
    await running;
    expect(replacement.id).not.toBe(job.id);
    const details = (await findJob(env.db, job.id))!;
    expect(details.state).toBe("dead");
    expect(details.timeline.map((event) => event.event)).toContain("exhausted");
    expect(script.hookCalls).toEqual([{ jobId: job.id, error: expect.stringContaining("scripted failure") }]);
    expect((await recordOf(env, job.id))!.phase).toBe("dead");
    expect((await findJob(env.db, replacement.id))!.state).toBe("succeeded");
  });

  test("remove_job, complete_jobs and permanently_fail_jobs by another service show in the records at once", async ({ env }) => {
    const removed = await enqueueJob(env.db, env.registry, "resolve_taxa", {}, { jobKey: "external-remove" });
    const completed = await enqueueJob(env.db, env.registry, "resolve_taxa", {});
    const failed = await enqueueJob(env.db, env.registry, "resolve_taxa", {});
    await sql`select graphile_worker.remove_job('external-remove')`.execute(env.db);
    await sql`select graphile_worker.complete_jobs(array[${completed.id}::bigint])`.execute(env.db);
    await sql`select graphile_worker.permanently_fail_jobs(array[${failed.id}::bigint], 'given up by the app')`.execute(env.db);
    expect((await findJob(env.db, removed.id))!.state).toBe("cancelled");
    expect((await findJob(env.db, completed.id))!.state).toBe("cancelled");
    const dead = (await findJob(env.db, failed.id))!;
    expect(dead).toMatchObject({ state: "dead", lastError: "given up by the app" });
    expect((await recordOf(env, failed.id))!.phase).toBe("dead");
    const cancelled = (await listJobs(env.db, { state: "cancelled", limit: 10 })).jobs.map((row) => row.id);
    expect(cancelled.sort()).toEqual([removed.id, completed.id].sort());
  });

  test("cancelling a fan-out of 12,000 pending children works in chunks, ids as arrays", async ({ env }) => {
    const parent = await enqueueJob(env.db, env.registry, "resolve_taxa", {}, { runAt: new Date(Date.now() + 3_600_000) });
    const payloads = Array.from({ length: 12_000 }, (_, index) => ({ taxonIds: [index + 1] }));
    await enqueueJobs(env.db, env.registry, "resolve_taxa", payloads, { runAt: new Date(Date.now() + 3_600_000), jobKey: null }, { source: "task", parentId: parent.id });
    const result = await cancelJob(env.db, parent.id, "operator@example.org");
    expect(result.state).toBe("cancelled");
    expect(result.children).toMatchObject({ total: 12_000, cancelled: 12_000, waiting: 0 });
    expect(await listLiveJobs(env.db)).toEqual([]);
    const { rows } = await sql<{ count: number }>`select count(*)::int as count from observing_jobs.job_events where event = 'cancelled'`.execute(env.db);
    expect(rows[0]!.count).toBe(12_001);
  });

  test("cron freshness keeps an entry's last success after retention pruned its records", async ({ env }) => {
    const crontab = checkCrontab("0 4 1 * * resolve_taxa ?id=monthly_probe&stale=32d", env.registry);
    await sql`select graphile_worker.add_job('resolve_taxa', json_build_object('_cron', json_build_object('ts', now())))`.execute(env.db);
    await runDueJobs(env);
    // Forty days pass: retention forgets the job.
    await sql`update observing_jobs.job_records set created_at = now() - interval '40 days', finished_at = now() - interval '40 days'`.execute(env.db);
    await sql`update observing_jobs.cron_runs set last_success_at = now() - interval '40 days', last_run_at = now() - interval '40 days'`.execute(env.db);
    await performTask(env, "prune_job_history", {});
    expect(await env.db.selectFrom("observing_jobs.job_records").select("id").execute()).toEqual([]);
    const [status] = await makeCronFreshness(env.db, crontab, { startedAt: new Date(), maxAgeMs: 0 }).read();
    expect(status!.lastSuccessAt!.getTime()).toBeLessThan(Date.now() - 39 * 86_400_000);
    expect(status!.overdue).toBe(true);
  });
});

describe("listings on a big history", () => {
  test("every list and filter of the API and the dashboard is planned on indexes, never a scan of the records", async ({ env }) => {
    await sql`
      insert into observing_jobs.job_records (id, task, queue, source, payload, phase, max_attempts, run_at, created_at, finished_at, job_key)
      select n, case when n % 7 = 0 then 'refresh_thumbnails' else 'resolve_taxa' end, case when n % 11 = 0 then 'gbif' end, 'app', '{}',
        case when n % 101 = 0 then 'cancelled' when n % 13 = 0 then 'dead' else 'succeeded' end, 8,
        now() - (n || ' seconds')::interval, now() - (n || ' seconds')::interval, now() - (n || ' seconds')::interval, 'k' || n
      from generate_series(1, 200000) n`.execute(env.db);
    await sql`insert into observing_jobs.job_events (job_id, task, event, attempt) select id, task, 'cancelled', 0 from observing_jobs.job_records where phase = 'cancelled'`.execute(env.db);
    await sql`analyze observing_jobs.job_records`.execute(env.db);
    await sql`analyze observing_jobs.job_events`.execute(env.db);
    const filters = [
      { limit: 50 },
      { limit: 50, task: "refresh_thumbnails" },
      { limit: 50, queue: "gbif" },
      { limit: 50, state: "succeeded" as const },
      { limit: 50, state: "cancelled" as const },
      { limit: 50, state: "dead" as const },
      { limit: 50, state: "queued" as const, task: "resolve_taxa" },
      { limit: 50, state: "running" as const },
      { limit: 50, from: new Date(Date.now() - 3_600_000) },
      { limit: 50, to: new Date(Date.now() - 100_000_000) },
      { limit: 50, before: "150000", task: "resolve_taxa" },
    ];
    // The plans PostgreSQL picks on these 200,000 records (statistics analysed), with no nudging:
    // none reads the records or the events sequentially.
    for (const filter of filters) {
      const queries = await capture(env, (db) => listJobs(db, filter));
      for (const query of queries) {
        const plan = await planOf(env, query, { discourageSeqScans: false });
        expect(plan, `${JSON.stringify(filter)}: ${query.sql}`).not.toMatch(/Seq Scan on (job_records|job_events)/);
      }
    }
    for (const query of await capture(env, (db) => findJobByKey(db, "k77"))) {
      expect(await planOf(env, query, { discourageSeqScans: false })).not.toMatch(/Seq Scan on (job_records|job_events)/);
    }
  });
});

describe("what the triggers rely on in graphile-worker's private table", () => {
  test("the columns, the functions' statements and the triggers are what migration 0008 expects", async ({ env }) => {
    const { rows: columns } = await sql<{ column_name: string; data_type: string }>`
      select column_name, data_type from information_schema.columns
      where table_schema = 'graphile_worker' and table_name = '_private_jobs'`.execute(env.db);
    const types = Object.fromEntries(columns.map((column) => [column.column_name, column.data_type]));
    expect(types).toMatchObject({
      id: "bigint",
      task_id: "integer",
      job_queue_id: "integer",
      payload: "json",
      priority: "smallint",
      run_at: "timestamp with time zone",
      attempts: "smallint",
      max_attempts: "smallint",
      last_error: "text",
      created_at: "timestamp with time zone",
      key: "text",
      locked_at: "timestamp with time zone",
      locked_by: "text",
    });
    const { rows: triggers } = await sql<{ tgname: string }>`
      select tgname from pg_trigger where tgrelid = 'graphile_worker._private_jobs'::regclass and not tgisinternal order by tgname`.execute(env.db);
    expect(triggers.map((row) => row.tgname)).toEqual([
      "observing_jobs_attempt_failed", // 0008: records
      "observing_jobs_dead_changed",
      "observing_jobs_deleted",
      "observing_jobs_fence_completion", // 0010: fencing
      "observing_jobs_fence_lock",
      "observing_jobs_flag_for_pauses", // 0017: pauses
      "observing_jobs_global_cap", // 0018: global caps
      "observing_jobs_internal_tasks", // 0011: internal tasks
    ]);
    // complete_jobs, remove_job and permanently_fail_jobs leave locked jobs alone (a locked delete is a completion).
    for (const name of ["complete_jobs", "permanently_fail_jobs", "remove_job"]) {
      const { rows } = await sql<{ src: string }>`
        select prosrc as src from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'graphile_worker' and p.proname = ${name}`.execute(env.db);
      expect(rows[0]!.src.replace(/\s+/g, " "), name).toMatch(/locked_at is null or locked_at < now\(\) - interval '4 hours'/i);
    }
  });
});

/** job_records' update counters; the statistics collector reports them with a delay of up to a second. */
async function tableStats(env: TestEnv): Promise<{ updates: number; hotUpdates: number }> {
  const { rows } = await sql<{ updates: string; hot: string }>`
    select n_tup_upd::text as updates, n_tup_hot_upd::text as hot from pg_stat_user_tables
    where schemaname = 'observing_jobs' and relname = 'job_records'`.execute(env.db);
  return { updates: Number(rows[0]?.updates ?? 0), hotUpdates: Number(rows[0]?.hot ?? 0) };
}
