/**
 * src/worker/job-control.ts and the fencing triggers (migrations 0010, 0011) write graphile-worker's
 * private tables. These tests pin every assumption that makes that sound: the columns used, that
 * graphile-worker's completion deletes by id alone (so a stale pool would complete a job another
 * pool holds, were it not for the fence), and that each statement changes a job only for the
 * pool that holds it.
 */
import { EventEmitter } from "node:events";
import type { WorkerEvents } from "graphile-worker";
import { sql } from "kysely";
import Type from "typebox";
import { describe, expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { listGlobalCaps, recordGlobalCaps } from "../../src/db/repositories/global-caps.ts";
import { registerTask, TaskRegistry } from "../../src/registry.ts";
import { InFlightJobs } from "../../src/worker/in-flight-jobs.ts";
import { defineTask } from "../../src/task.ts";
import { deferJob, failPermanently, holdsJob, makeRunnerSessionName, RUNNER_SESSION_PREFIX } from "../../src/worker/job-control.ts";
import { settleEndedPool } from "../../src/reliability/pool-settlement.ts";
import type { PoolEndCause } from "../../src/worker/supervisor.ts";
import { startWorker } from "../../src/worker/worker.ts";
import { listJobs, resetData, test, waitFor, type TestEnv } from "../helpers/env.ts";

test.beforeEach(async ({ env }) => {
  // Jobs a test left locked by a made-up pool: released, so resetData can complete them.
  await sql`select graphile_worker.force_unlock_workers(array(select distinct locked_by from graphile_worker.jobs where locked_by is not null))`.execute(env.db);
  await resetData(env);
  await sql`truncate observing_jobs.worker_heartbeats, observing_jobs.fenced_completions`.execute(env.db);
});

/** What graphile-worker's fetch does to a job (attempts + 1, locked by the pool), and to its named queue. */
async function lockAs(env: TestEnv, jobId: string, poolId: string): Promise<void> {
  await sql`
    with j as (
      update graphile_worker._private_jobs set attempts = attempts + 1, locked_by = ${poolId}, locked_at = now()
      where id = ${jobId}::bigint returning job_queue_id
    )
    update graphile_worker._private_job_queues q set locked_by = ${poolId}, locked_at = now() from j where q.id = j.job_queue_id`.execute(env.db);
}

async function privateRow(env: TestEnv, jobId: string) {
  const { rows } = await sql<{ attempts: number; max_attempts: number; locked_by: string | null; run_at: Date; last_error: string | null; is_available: boolean; queue_locked_by: string | null }>`
    select j.attempts, j.max_attempts, j.locked_by, j.run_at, j.last_error, j.is_available, q.locked_by as queue_locked_by
    from graphile_worker._private_jobs j left join graphile_worker._private_job_queues q on q.id = j.job_queue_id
    where j.id = ${jobId}::bigint`.execute(env.db);
  return rows[0];
}

describe("graphile-worker's private tables, as job-control uses them", () => {
  test("have the columns and the availability rule the statements rely on", async ({ env }) => {
    const { rows } = await sql<{ table_name: string; column_name: string; data_type: string }>`
      select table_name, column_name, data_type from information_schema.columns
      where table_schema = 'graphile_worker' and table_name in ('_private_jobs', '_private_job_queues')
      order by table_name, column_name`.execute(env.db);
    const columns = new Map(rows.map((row) => [`${row.table_name}.${row.column_name}`, row.data_type]));
    expect(Object.fromEntries(["id", "job_queue_id", "attempts", "max_attempts", "locked_by", "locked_at", "run_at", "last_error", "is_available"].map((c) => [c, columns.get(`_private_jobs.${c}`)]))).toEqual({
      id: "bigint",
      job_queue_id: "integer",
      attempts: "smallint",
      max_attempts: "smallint",
      locked_by: "text",
      locked_at: "timestamp with time zone",
      run_at: "timestamp with time zone",
      last_error: "text",
      is_available: "boolean",
    });
    expect([columns.get("_private_job_queues.locked_by"), columns.get("_private_job_queues.locked_at")]).toEqual(["text", "timestamp with time zone"]);
    // is_available: not locked and attempts left. Permanent failure relies on the second half.
    const { id } = await enqueueJob(env.db, env.registry, "prune_job_history", {});
    await sql`update graphile_worker._private_jobs set attempts = max_attempts where id = ${id}::bigint`.execute(env.db);
    expect((await privateRow(env, id))!.is_available).toBe(false);
  });
});

describe("job-control", () => {
  test("failPermanently changes the job only for the pool that holds it, and leaves it dead after graphile-worker's failure", async ({ env }) => {
    const { id } = await enqueueJob(env.db, env.registry, "prune_job_history", {}, { maxAttempts: 8 });
    await lockAs(env, id, "pool-a");
    expect(await failPermanently(env.db, { id, poolId: "pool-b" }, "no")).toBe(false);
    expect(await privateRow(env, id)).toMatchObject({ attempts: 1, max_attempts: 8, last_error: null });
    expect(await failPermanently(env.db, { id, poolId: "pool-a" }, "IUCN_API_TOKEN is not set")).toBe(true);
    // graphile-worker's own failure statement (fenced by locked_by) then unlocks it: dead, with its reason.
    await sql`select graphile_worker.force_unlock_workers(array['pool-a'])`.execute(env.db);
    expect(await privateRow(env, id)).toMatchObject({ attempts: 1, max_attempts: 1, last_error: "IUCN_API_TOKEN is not set", is_available: false });
  });

  test("deferJob gives the attempt back, sets run_at and unlocks the named queue, for the holder only", async ({ env }) => {
    const { id } = await enqueueJob(env.db, env.registry, "sync_conservation_status", { taxonIds: [1] });
    await lockAs(env, id, "pool-a");
    const runAt = new Date(Date.now() + 120_000);
    expect(await deferJob(env.db, { id, poolId: "pool-b" }, runAt, "no")).toBe(false);
    expect(await privateRow(env, id)).toMatchObject({ locked_by: "pool-a", queue_locked_by: "pool-a" });
    expect(await deferJob(env.db, { id, poolId: "pool-a" }, runAt, "deferred: HTTP 429")).toBe(true);
    const row = (await privateRow(env, id))!;
    expect(row).toMatchObject({ attempts: 0, locked_by: null, queue_locked_by: null, last_error: "deferred: HTTP 429", is_available: true });
    expect(row.run_at.getTime()).toBe(runAt.getTime());
  });

  test("holdsJob tells the holder from everyone else", async ({ env }) => {
    const { id } = await enqueueJob(env.db, env.registry, "prune_job_history", {});
    await lockAs(env, id, "pool-a");
    expect(await holdsJob(env.db, { id, poolId: "pool-a" })).toBe(true);
    expect(await holdsJob(env.db, { id, poolId: "pool-b" })).toBe(false);
  });
});

describe("the shutdown deadline", () => {
  test("a pool shut down forcefully is settled at once, and once: its interrupted job goes back with its attempt and one rescued event", async ({ env }) => {
    let started = 0;
    const registry = new TaskRegistry([
      ...env.registry.all(),
      // Ignores its abort signal, which fires only after the deadline here: the deadline decides.
      registerTask("stuck_task", defineTask({ description: "test", payload: Type.Object({}), async run() { started += 1; await new Promise(() => {}); } })),
    ]);
    const inFlight = new InFlightJobs();
    const settlements: string[] = [];
    const events: WorkerEvents = new EventEmitter();
    const worker = await startFencedWorker(env, registry, events, {
      pollIntervalMs: 100,
      leaseHolds: () => true,
      shutdownAbortAfterMs: 60_000,
      poolEnded: async (poolId, cause) => {
        settlements.push(`${poolId} ${cause}`);
        await settleEndedPool({ db: env.db, heartbeats: { unregister: () => {} }, inFlight, logger: env.logger }, poolId, cause);
      },
      inFlight,
    });
    const { id } = await enqueueJob(env.db, registry, "stuck_task", {});
    await waitFor(() => started === 1, { message: "the job to start" });
    await worker.stop();
    // Each pool settled once, at shutdown (the main runner's, which ran the job, among them).
    expect(new Set(settlements).size).toBe(settlements.length);
    expect(settlements.every((entry) => entry.endsWith(" shutdown"))).toBe(true);
    expect(await privateRow(env, id)).toMatchObject({ attempts: 0, locked_by: null });
    const timeline = (await findJob(env.db, id))!.timeline.map((event) => [event.event, event.actor ?? null]);
    expect(timeline.filter(([event]) => event === "rescued")).toEqual([["rescued", "shutdown"]]);
  });
});

describe("the fence on graphile-worker's own statements", () => {
  test("a runner's completion of a job it no longer holds is refused and recorded; other sessions are untouched", async ({ env }) => {
    const session = makeRunnerSessionName();
    expect(session.startsWith(RUNNER_SESSION_PREFIX)).toBe(true);
    const runner = env.derive({ max: 1, applicationName: session });
    try {
      await sql`insert into observing_jobs.worker_heartbeats (pool_id, runner, instance_id, hostname, pid, session_name) values ('pool-a', 'main', 'i', 'h', 1, ${session})`.execute(env.db);
      const held = await enqueueJob(env.db, env.registry, "prune_job_history", {});
      const released = await enqueueJob(env.db, env.registry, "prune_job_history", {});
      const takenOver = await enqueueJob(env.db, env.registry, "prune_job_history", {});
      await lockAs(env, held.id, "pool-a");
      await lockAs(env, takenOver.id, "pool-b");
      // graphile-worker's completion statement for jobs without a queue, as 0.18 sends it: by id alone.
      const complete = (id: string) => runner.pool.query({ text: 'delete from "graphile_worker"._private_jobs as jobs\nwhere id = $1::bigint', values: [id] });
      expect((await complete(held.id)).rowCount).toBe(1);
      expect((await complete(released.id)).rowCount).toBe(0);
      expect((await complete(takenOver.id)).rowCount).toBe(0);
      expect((await listJobs(env.db)).map((job) => job.id)).toEqual([released.id, takenOver.id]);
      const { rows } = await sql<{ job_id: string; pool_id: string; held_by: string | null }>`select job_id::text, pool_id, held_by from observing_jobs.fenced_completions order by id`.execute(env.db);
      expect(rows).toEqual([
        { job_id: released.id, pool_id: "pool-a", held_by: null },
        { job_id: takenOver.id, pool_id: "pool-a", held_by: "pool-b" },
      ]);
      // The service's own sessions (an operator's cancel, say) delete as before.
      await sql`select graphile_worker.complete_jobs(array[${released.id}]::bigint[])`.execute(env.db);
      expect((await listJobs(env.db)).map((job) => job.id)).toEqual([takenOver.id]);
    } finally {
      await runner.close();
    }
  });

  test("the fences look the pool up once per fetch and once per completion batch, and still refuse row by row", async ({ env }) => {
    const session = makeRunnerSessionName();
    const runner = env.derive({ max: 1, applicationName: session });
    try {
      await sql`insert into observing_jobs.worker_heartbeats (pool_id, runner, instance_id, hostname, pid, session_name) values ('pool-a', 'main', 'i', 'h', 1, ${session})`.execute(env.db);
      const client = await runner.pool.connect();
      try {
        await client.query("set track_functions = 'pl'");
        // Calls of the fence functions inside one transaction of the runner's session, and that statement's row count.
        const counted = async (text: string, values: unknown[]) => {
          const calls = async () => {
            const { rows } = await client.query<{ name: string; calls: string }>(
              "select funcname as name, calls::text from pg_stat_xact_user_functions where schemaname = 'observing_jobs' and funcname like 'fence_runner_%'",
            );
            return Object.fromEntries(rows.map((row) => [row.name, Number(row.calls)]));
          };
          await client.query("begin");
          const before = await calls();
          const { rowCount } = await client.query(text, values);
          const after = await calls();
          await client.query("commit");
          const delta = (name: string) => (after[name] ?? 0) - (before[name] ?? 0);
          return { rows: rowCount, lockChecks: delta("fence_runner_lock"), completionChecks: delta("fence_runner_completion") };
        };
        const ids: string[] = [];
        for (let i = 0; i < 20; i++) ids.push((await enqueueJob(env.db, env.registry, "resolve_taxa", { limit: i + 1 }, { queueName: i < 10 ? `fenced-${i}` : null })).id);
        // graphile-worker's batched fetch: jobs and their named queues locked in one statement.
        const fetch = (poolId: string, batch: string[]) =>
          counted(
            `with j as (update graphile_worker._private_jobs set attempts = attempts + 1, locked_by = $1, locked_at = now() where id = any($2::bigint[]) returning job_queue_id)
             update graphile_worker._private_job_queues q set locked_by = $1, locked_at = now() from j where q.id = j.job_queue_id`,
            [poolId, batch],
          );
        const complete = (batch: string[]) => counted("delete from graphile_worker._private_jobs where id = any($1::bigint[])", [batch]);

        expect(await fetch("pool-a", ids.slice(0, 15))).toMatchObject({ rows: 10, lockChecks: 1 });
        expect(await fetch("pool-a", ids.slice(15))).toMatchObject({ lockChecks: 1 }); // a new transaction asks again
        expect((await listJobs(env.db)).filter((job) => job.locked_by === "pool-a")).toHaveLength(20);
        expect(await complete(ids.slice(0, 5))).toEqual({ rows: 5, lockChecks: 0, completionChecks: 1 });
        expect(await complete(ids.slice(5, 10))).toEqual({ rows: 5, lockChecks: 0, completionChecks: 1 }); // each batch asks once
        // Released by the sweeper, or taken over by another pool: each such row still calls the fence and is refused.
        await sql`update graphile_worker._private_jobs set locked_by = null, locked_at = null where id = any(${ids.slice(10, 12)}::bigint[])`.execute(env.db);
        await sql`update graphile_worker._private_jobs set locked_by = 'pool-b' where id = any(${ids.slice(12, 14)}::bigint[])`.execute(env.db);
        // The batch's own two jobs: one call between them.
        expect(await complete(ids.slice(10, 16))).toEqual({ rows: 2, lockChecks: 0, completionChecks: 5 });
        const { rows: fenced } = await sql<{ job_id: string; held_by: string | null }>`select job_id::text, held_by from observing_jobs.fenced_completions order by job_id`.execute(env.db);
        expect(fenced).toEqual([...ids.slice(10, 12).map((id) => ({ job_id: id, held_by: null })), ...ids.slice(12, 14).map((id) => ({ job_id: id, held_by: "pool-b" }))]);
        // Declared dead: nothing is remembered of a refusal, so each row of the next fetch asks, and none is locked.
        await sql`update observing_jobs.worker_heartbeats set status = 'dead' where pool_id = 'pool-a'`.execute(env.db);
        expect(await fetch("pool-a", ids.slice(10, 12))).toMatchObject({ rows: 0, lockChecks: 2 });
        expect((await listJobs(env.db)).filter((job) => ids.slice(10, 12).includes(job.id)).map((job) => job.locked_by)).toEqual([null, null]);
      } finally {
        client.release();
      }
    } finally {
      await runner.close();
    }
  });

  test("a runner connection whose first statement completes a job the sweeper released is refused", async ({ env }) => {
    // A pool frozen past the rescue threshold wakes on new connections (node-postgres closes idle ones): nothing remembered yet.
    const session = makeRunnerSessionName();
    await sql`insert into observing_jobs.worker_heartbeats (pool_id, runner, instance_id, hostname, pid, session_name) values ('pool-a', 'main', 'i', 'h', 1, ${session})`.execute(env.db);
    const released = await enqueueJob(env.db, env.registry, "prune_job_history", {});
    await lockAs(env, released.id, "pool-a");
    await sql`update graphile_worker._private_jobs set locked_by = null, locked_at = null where id = ${released.id}::bigint`.execute(env.db);
    const runner = env.derive({ max: 1, applicationName: session });
    try {
      expect((await runner.pool.query("delete from graphile_worker._private_jobs where id = $1::bigint", [released.id])).rowCount).toBe(0);
      const { rows } = await sql<{ job_id: string; held_by: string | null }>`select job_id::text, held_by from observing_jobs.fenced_completions`.execute(env.db);
      expect(rows).toEqual([{ job_id: released.id, held_by: null }]);
      expect(await findJob(env.db, released.id)).toMatchObject({ state: "queued" });
    } finally {
      await runner.close();
    }
  });

  test("behind a pooler that hands one server connection to runner after runner, a stale completion is still refused", async ({ env }) => {
    // PgBouncer in transaction mode: each client's application_name is set on the shared connection, other settings stay.
    const [stale, current] = [makeRunnerSessionName(), makeRunnerSessionName()];
    await sql`insert into observing_jobs.worker_heartbeats (pool_id, runner, instance_id, hostname, pid, session_name, status)
      values ('pool-stale', 'main', 'i', 'h', 1, ${stale}, 'dead'), ('pool-current', 'main', 'i', 'h', 2, ${current}, 'live')`.execute(env.db);
    const own = await enqueueJob(env.db, env.registry, "prune_job_history", {});
    const takenOver = await enqueueJob(env.db, env.registry, "resolve_taxa", { limit: 1 });
    await lockAs(env, own.id, "pool-current");
    await lockAs(env, takenOver.id, "pool-current");
    const shared = env.derive({ max: 1, applicationName: "a pooler's server connection" });
    try {
      const backends = new Set<number>();
      const as = async (session: string, id: string) => {
        await shared.pool.query(`set application_name = '${session}'`);
        backends.add((await shared.pool.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]!.pid);
        return (await shared.pool.query("delete from graphile_worker._private_jobs where id = $1::bigint", [id])).rowCount;
      };
      expect(await as(current, own.id)).toBe(1);
      // The stale runner's completion of the job the current pool holds, on the same connection.
      expect(await as(stale, takenOver.id)).toBe(0);
      expect(backends.size).toBe(1);
      expect((await listJobs(env.db)).map((job) => [job.id, job.locked_by])).toEqual([[takenOver.id, "pool-current"]]);
      const { rows } = await sql<{ job_id: string; pool_id: string; held_by: string }>`select job_id::text, pool_id, held_by from observing_jobs.fenced_completions`.execute(env.db);
      expect(rows).toEqual([{ job_id: takenOver.id, pool_id: "pool-stale", held_by: "pool-current" }]);
    } finally {
      await shared.close();
    }
  });

  test("a runner whose pool was declared dead fetches nothing; a live one fetches, queues included", async ({ env }) => {
    let started = 0;
    const registry = new TaskRegistry([
      ...env.registry.all(),
      registerTask("fenced_task", defineTask({ description: "test", payload: Type.Object({}), defaults: { queueName: "fenced" }, async run() { started += 1; } })),
    ]);
    const dead = new Set<string>();
    const events: WorkerEvents = new EventEmitter();
    let emptyFetches = 0;
    events.on("worker:getJob:empty", () => (emptyFetches += 1));
    const worker = await startFencedWorker(env, registry, events, { pollIntervalMs: 100, leaseHolds: (poolId) => !dead.has(poolId) });
    try {
      await enqueueJob(env.db, registry, "fenced_task", {});
      await waitFor(() => started === 1, { message: "a live pool to run the job" });
      await waitFor(async () => (await listJobs(env.db, "fenced_task")).length === 0, { message: "its completion, which unlocks the queue" });
      const poolId = worker.runners[0]!.poolId()!;
      // The sweeper's verdict, which this pool has not heard of yet.
      await sql`update observing_jobs.worker_heartbeats set status = 'dead' where pool_id = ${poolId}`.execute(env.db);
      dead.add(poolId);
      const { id } = await enqueueJob(env.db, registry, "fenced_task", {});
      // Several fetches of the pool go by: none may lock the job or its queue.
      const before = emptyFetches;
      await waitFor(() => emptyFetches >= before + 3, { message: "the pool to try fetching a few times" });
      expect(started).toBe(1);
      expect(await privateRow(env, id)).toMatchObject({ attempts: 0, locked_by: null, queue_locked_by: null });
    } finally {
      await worker.stop();
    }
  });

  test("a global cap's slots are shared by every runner of its group; a job skipped for want of one leaves its named queue unlocked", async ({ env }) => {
    const cap = await startCappedInstances(env, 100);
    try {
      const first = await enqueueJob(env.db, cap.registry, "solo_task", { label: "first" }, { queueName: "queue_a" });
      await waitFor(() => cap.started.length === 1, { message: "one job to start" });
      const second = await enqueueJob(env.db, cap.registry, "solo_task", { label: "second" }, { queueName: "queue_b" });
      // Both instances' runners try to fetch it a few times while the one slot is taken.
      const before = cap.emptyFetches();
      await waitFor(() => cap.emptyFetches() >= before + 6, { message: "the runners to try fetching a few times" });
      expect(cap.started).toEqual(["first"]);
      expect(await privateRow(env, second.id)).toMatchObject({ attempts: 0, locked_by: null, queue_locked_by: null });
      expect((await privateRow(env, first.id))?.queue_locked_by).not.toBeNull();
      expect(await listGlobalCaps(env.db)).toEqual([{ group: "solo", slots: 1, inUse: 1 }]);

      cap.release("first");
      await waitFor(() => cap.started.length === 2, { message: "the second job to start once the slot is free" });
      cap.release("second");
      await waitFor(async () => (await listJobs(env.db, "solo_task")).length === 0, { message: "both jobs to complete" });
      expect(cap.maxRunning()).toBe(1);
      expect(await listGlobalCaps(env.db)).toEqual([{ group: "solo", slots: 1, inUse: 0 }]);
    } finally {
      await cap.stop();
    }
  });

  test("a lowered global cap counts the jobs still running above it: nothing starts until the group is under the new limit", async ({ env }) => {
    const cap = await startCappedInstances(env, 100, 2);
    try {
      await enqueueJob(env.db, cap.registry, "solo_task", { label: "first" });
      await enqueueJob(env.db, cap.registry, "solo_task", { label: "second" });
      await waitFor(() => cap.started.length === 2, { message: "both slots to be taken" });
      // An operator lowers the cap to 1 (a new revision starts and writes it) while both run.
      expect(await recordGlobalCaps(env.db, [{ group: "solo", slots: 1 }])).toEqual([{ group: "solo", from: 2, to: 1 }]);
      expect(await recordGlobalCaps(env.db, [{ group: "solo", slots: 1 }])).toEqual([]);
      await enqueueJob(env.db, cap.registry, "solo_task", { label: "third" });
      const slotOfSecond = await sql<{ slot: number }>`select s.slot from observing_jobs.global_cap_slots s join graphile_worker._private_jobs j on j.id = s.job_id and j.locked_by = s.pool_id where j.payload->>'label' = 'second'`.execute(env.db);
      // Whichever ends first, the one left still counts: the third waits until both have ended.
      const firstToEnd = slotOfSecond.rows[0]!.slot === 0 ? "second" : "first";
      cap.release(firstToEnd);
      await waitFor(async () => (await listGlobalCaps(env.db))[0]!.inUse === 1, { message: "the first job to end" });
      const before = cap.emptyFetches();
      await waitFor(() => cap.emptyFetches() >= before + 6, { message: "the runners to try fetching a few times" });
      expect([...cap.started].sort()).toEqual(["first", "second"]);
      expect(await listGlobalCaps(env.db)).toEqual([{ group: "solo", slots: 1, inUse: 1 }]);
      cap.release(firstToEnd === "first" ? "second" : "first");
      await waitFor(() => cap.started.length === 3, { message: "the third job to start once the group is under the new limit" });
    } finally {
      await cap.stop();
    }
  });

  test("a job fetched again holds one slot, whichever it held before; a lowered limit counts jobs, not slot rows", async ({ env }) => {
    await sql`truncate observing_jobs.global_caps cascade`.execute(env.db);
    await recordGlobalCaps(env.db, [{ group: "solo", slots: 2 }]);
    const sessions = { a: makeRunnerSessionName(true), b: makeRunnerSessionName(true) };
    const runners = { a: env.derive({ max: 1, applicationName: sessions.a }), b: env.derive({ max: 1, applicationName: sessions.b }) };
    try {
      for (const [pool, session] of [["pool-a", sessions.a], ["pool-b", sessions.b]]) {
        await sql`insert into observing_jobs.worker_heartbeats (pool_id, runner, instance_id, hostname, pid, session_name) values (${pool}, 'solo', 'i', 'h', 1, ${session})`.execute(env.db);
      }
      const add = async () => (await sql<{ id: string }>`select (graphile_worker.add_job('solo_task', '{}')).id::text as id`.execute(env.db)).rows[0]!.id;
      // graphile-worker's fetch, as far as the triggers see it: the lock, by the runner's own connection.
      const fetchAs = async (runner: "a" | "b", id: string) =>
        Number((await runners[runner].pool.query("update graphile_worker._private_jobs set attempts = attempts + 1, locked_by = $1, locked_at = now() where id = $2::bigint", [`pool-${runner}`, id])).rowCount);
      const [first, second, third] = [await add(), await add(), await add()];
      expect(await fetchAs("a", first)).toBe(1);
      expect(await fetchAs("a", second)).toBe(1);
      const slotsOf = async () => (await sql<{ slot: number; job_id: string | null }>`select slot, job_id::text from observing_jobs.global_cap_slots where group_name = 'solo' order by slot`.execute(env.db)).rows;
      expect(await slotsOf()).toEqual([{ slot: 0, job_id: first }, { slot: 1, job_id: second }]);
      // The limit is lowered to 1; the second job fails (unlocked), the first completes.
      await recordGlobalCaps(env.db, [{ group: "solo", slots: 1 }]);
      await sql`update graphile_worker._private_jobs set locked_by = null, locked_at = null where id = ${second}::bigint`.execute(env.db);
      await runners.a.pool.query("delete from graphile_worker._private_jobs where id = $1::bigint", [first]);
      // Fetched again by the same pool: it takes slot 0 and gives up slot 1, which it named still.
      expect(await fetchAs("a", second)).toBe(1);
      expect(await slotsOf()).toEqual([{ slot: 0, job_id: second }, { slot: 1, job_id: null }]);
      expect(await listGlobalCaps(env.db)).toEqual([{ group: "solo", slots: 1, inUse: 1 }]);
      // The group is at its limit: another pool's fetch takes nothing.
      expect(await fetchAs("b", third)).toBe(0);
    } finally {
      await sql`select graphile_worker.force_unlock_workers(array['pool-a', 'pool-b'])`.execute(env.db);
      await runners.a.close();
      await runners.b.close();
    }
  });

  test("a worker whose job ended fetches again once the end has committed: its freed slot is taken at once, not at the next poll", async ({ env }) => {
    // Longer than the test: no poll comes in time. (No named queues here: every pool's fetch locks
    // the available queues for a moment, so a fetch may miss a queued job.)
    const cap = await startCappedInstances(env, 120_000);
    try {
      await enqueueJob(env.db, cap.registry, "solo_task", { label: "first" });
      await waitFor(() => cap.started.length === 1, { message: "one job to start" });
      const before = cap.emptyFetches();
      await enqueueJob(env.db, cap.registry, "solo_task", { label: "second" });
      await waitFor(() => cap.emptyFetches() >= before + 1, { message: "the runners to try fetching it" });
      expect(cap.started).toEqual(["first"]);
      cap.release();
      await waitFor(() => cap.started.length === 2, { timeoutMs: 5000, message: "the second job to start once the slot is free" });
    } finally {
      await cap.stop();
    }
  });
});

/** Two instances' worth of runners in this process, sharing a global cap of one slot over `solo_task`, whose attempts wait for `release()`. */
async function startCappedInstances(env: TestEnv, pollIntervalMs: number, limit = 1) {
  await sql`truncate observing_jobs.global_caps cascade`.execute(env.db);
  let running = 0;
  let maxRunning = 0;
  const started: string[] = [];
  // Each attempt waits for its label's release (or for all of them).
  const releases = new Map<string, PromiseWithResolvers<void>>();
  const releaseOf = (label: string) => releases.get(label) ?? releases.set(label, Promise.withResolvers<void>()).get(label)!;
  const registry = new TaskRegistry([
    ...env.registry.all(),
    registerTask(
      "solo_task",
      defineTask({
        description: "test",
        payload: Type.Object({ label: Type.String() }),
        defaults: { concurrency: { limit, group: "solo" } },
        async run({ label }) {
          started.push(label);
          maxRunning = Math.max(maxRunning, ++running);
          await releaseOf(label).promise;
          running -= 1;
        },
      }),
    ),
  ]);
  await recordGlobalCaps(env.db, [{ group: "solo", slots: limit }]);
  const events: WorkerEvents = new EventEmitter();
  let emptyFetches = 0;
  events.on("worker:getJob:empty", () => (emptyFetches += 1));
  let listening = 0;
  events.on("pool:listen:success", () => (listening += 1));
  const startOne = () => startFencedWorker(env, registry, events, { pollIntervalMs, leaseHolds: () => true });
  const workers = [await startOne(), await startOne()];
  // A notification sent before a pool listens would wake nobody.
  const pools = workers.flatMap((worker) => worker.runners).length;
  await waitFor(() => listening >= pools, { message: "every pool to listen for new jobs" });
  return {
    registry,
    started,
    emptyFetches: () => emptyFetches,
    maxRunning: () => maxRunning,
    /** Lets the attempt of this label end, or every attempt's. */
    release: (label?: string) => (label === undefined ? [...releases.values()].forEach((release) => release.resolve()) : releaseOf(label).resolve()),
    async stop() {
      for (const release of releases.values()) release.resolve();
      for (const worker of workers) await worker.stop();
    },
  };
}

/** Runners as the service starts them (a pool of their own per start, its heartbeat row written before the first fetch), with concurrency 1. */
function startFencedWorker(
  env: TestEnv,
  registry: TaskRegistry,
  events: WorkerEvents,
  options: {
    pollIntervalMs: number;
    leaseHolds: (poolId: string) => boolean;
    poolEnded?: (poolId: string, cause: PoolEndCause) => Promise<void>;
    shutdownAbortAfterMs?: number;
    inFlight?: InFlightJobs;
  },
) {
  return startWorker({
    events,
    pool: env.pool,
    openRunnerPool: (applicationName, max) => env.derive({ max, applicationName }),
    deps: { ...env.deps, registry },
    observers: [],
    cronItems: [],
    concurrency: 1,
    pollIntervalMs: options.pollIntervalMs,
    reliability: {
      inFlight: options.inFlight ?? new InFlightJobs(),
      // What the heartbeat writer does before a pool's first fetch.
      poolStarted: async (poolId, runner, session) => {
        await sql`insert into observing_jobs.worker_heartbeats (pool_id, runner, instance_id, hostname, pid, session_name) values (${poolId}, ${runner}, 'i', 'h', 1, ${session})`.execute(env.db);
      },
      poolEnded: options.poolEnded ?? (async () => {}),
      leaseHolds: options.leaseHolds,
      shutdownAbortAfterMs: options.shutdownAbortAfterMs ?? 1000,
      shutdownTimeoutMs: 2000,
    },
  });
}
