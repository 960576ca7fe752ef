/**
 * The pieces of pausing that a whole service does not show one by one (test/worker/pauses.test.ts
 * runs them together): the flags every job gets however it is added, each runner's forbidden flags
 * (null, not [], when nothing concerns it), the hold at attempt start, and how fast an instance
 * learns of a pause by notification and by polling alone.
 */
import { EventEmitter } from "node:events";
import type { WorkerEvents } from "graphile-worker";
import { sql } from "kysely";
import Type from "typebox";
import { describe, expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { pause, resume } from "../../src/lifecycle/pauses.ts";
import { findJob } from "../../src/lifecycle/jobs.ts";
import type { JobSnapshot } from "../../src/worker/attempt.ts";
import { JobPausedError, PauseWatcher } from "../../src/worker/pause-gate.ts";
import { planRunners, startWorker } from "../../src/worker/worker.ts";
import { registerTask, TaskRegistry } from "../../src/registry.ts";
import { defineTask } from "../../src/task.ts";
import { expectEnqueued } from "../helpers/enqueued.ts";
import { listJobs, resetData, test, waitFor, type TestEnv } from "../helpers/env.ts";

test.beforeEach(async ({ env }) => {
  await sql`select graphile_worker.force_unlock_workers(array(select distinct locked_by from graphile_worker.jobs where locked_by is not null))`.execute(env.db);
  await resetData(env);
  await sql`truncate observing_jobs.pauses, observing_jobs.pause_events`.execute(env.db);
});

async function flagsOf(env: TestEnv, id: string): Promise<Record<string, boolean> | null> {
  const { rows } = await sql<{ flags: Record<string, boolean> | null }>`select flags from graphile_worker.jobs where id = ${id}::bigint`.execute(env.db);
  return rows[0]!.flags;
}

describe("the flags every job carries (migration 0017)", () => {
  test("name its task and named queue, next to the caller's own flags, however the job was added", async ({ env }) => {
    const viaService = await enqueueJob(env.db, env.registry, "refresh_thumbnails", {});
    expect(await flagsOf(env, viaService.id)).toEqual({ "pause:task:refresh_thumbnails": true, "pause:queue:wikidata": true });
    const { rows } = await sql<{ id: string }>`select (graphile_worker.add_job('resolve_taxa', '{}', flags := array['mine'])).id::text as id`.execute(env.db);
    expect(await flagsOf(env, rows[0]!.id)).toEqual({ mine: true, "pause:task:resolve_taxa": true });
    // A keyed re-enqueue into another queue: the old queue's flag goes, the new one comes.
    const { rows: keyed } = await sql<{ id: string }>`select (graphile_worker.add_job('resolve_taxa', '{}', queue_name := 'a', job_key := 'k')).id::text as id`.execute(env.db);
    await sql`select graphile_worker.add_job('resolve_taxa', '{}', queue_name := 'b', job_key := 'k')`.execute(env.db);
    expect(await flagsOf(env, keyed[0]!.id)).toEqual({ "pause:task:resolve_taxa": true, "pause:queue:b": true });
    // Moved by plain SQL to another queue: the same.
    await sql`update graphile_worker._private_jobs set job_queue_id = null where id = ${keyed[0]!.id}::bigint`.execute(env.db);
    expect(await flagsOf(env, keyed[0]!.id)).toEqual({ "pause:task:resolve_taxa": true });
  });
});

describe("each runner's gate", () => {
  function gates(env: TestEnv, watcher: PauseWatcher) {
    return Object.fromEntries(planRunners(env.registry, 4).map((plan) => [plan.name, watcher.gate(plan.name, plan.tasks)]));
  }

  test("forbids only what concerns its runner, and null (not []) while nothing does", async ({ env }) => {
    const watcher = new PauseWatcher({ db: env.db, logger: env.logger, pollIntervalMs: 60_000 });
    await watcher.start();
    try {
      const { main, gbif } = gates(env, watcher);
      expect(main!.forbiddenFlags()).toBeNull();
      expect(gbif!.forbiddenFlags()).toBeNull();
      await pause(env.db, env.registry, "group", "gbif", "test");
      await watcher.refresh();
      expect(gbif!.forbiddenFlags()!.sort()).toEqual(["pause:task:check_backbone_freshness", "pause:task:resolve_taxa"]);
      expect(main!.forbiddenFlags()).toBeNull();
      // The main runner's prune_job_history defaults to "maintenance"; the gbif runner has no job there.
      await pause(env.db, env.registry, "queue", "maintenance", "test");
      await watcher.refresh();
      expect(main!.forbiddenFlags()).toEqual(["pause:queue:maintenance"]);
      expect(gbif!.forbiddenFlags()!.sort()).toEqual(["pause:task:check_backbone_freshness", "pause:task:resolve_taxa"]);
      await resume(env.db, env.registry, "group", "gbif", "test");
      await resume(env.db, env.registry, "queue", "maintenance", "test");
      await watcher.refresh();
      expect(main!.forbiddenFlags()).toBeNull();
      expect(gbif!.forbiddenFlags()).toBeNull();
    } finally {
      await watcher.stop();
    }
  });

  test("a job fetched before the pause landed goes back unstarted, its attempt and run_at kept, with a deferred event; its queue is forbidden from then on", async ({ env }) => {
    const watcher = new PauseWatcher({ db: env.db, logger: env.logger, pollIntervalMs: 60_000 });
    await watcher.start();
    try {
      const { gbif } = gates(env, watcher);
      const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [1] }, { queueName: "adhoc" });
      // What graphile-worker's fetch does: attempts + 1, locked by the pool (and its queue too).
      await sql`
        with j as (update graphile_worker._private_jobs set attempts = attempts + 1, locked_by = 'pool-x', locked_at = now() where id = ${job.id}::bigint returning job_queue_id)
        update graphile_worker._private_job_queues q set locked_by = 'pool-x', locked_at = now() from j where q.id = j.job_queue_id`.execute(env.db);
      await pause(env.db, env.registry, "queue", "adhoc", "alice", "drill");
      await watcher.refresh();
      // No task of the gbif runner defaults to "adhoc": it learns the queue from the job.
      expect(gbif!.forbiddenFlags()).toBeNull();
      const snapshot: JobSnapshot = { id: job.id, task: "resolve_taxa", queue: "adhoc", attempt: 1, maxAttempts: 8, runAt: job.runAt, createdAt: new Date(), priority: 0, key: null, traceId: null };
      const held = await gbif!.holdIfPaused(env.registry.get("resolve_taxa"), snapshot, { id: job.id, poolId: "pool-x" }, env.db, env.logger, []);
      expect(held).toBeInstanceOf(JobPausedError);
      expect(held!.message).toMatch(/^not started: queue 'adhoc' is paused \(by alice since .*: drill\); the job waits, its attempt not spent$/);
      expect(gbif!.forbiddenFlags()).toEqual(["pause:queue:adhoc"]);
      const { rows } = await sql<{ attempts: number; locked_by: string | null; run_at: Date; queue_locked_by: string | null }>`
        select j.attempts, j.locked_by, j.run_at, q.locked_by as queue_locked_by from graphile_worker._private_jobs j
        join graphile_worker._private_job_queues q on q.id = j.job_queue_id where j.id = ${job.id}::bigint`.execute(env.db);
      expect(rows[0]).toEqual({ attempts: 0, locked_by: null, run_at: job.runAt, queue_locked_by: null });
      const details = await findJob(env.db, job.id);
      expect(details?.state).toBe("queued");
      expect(details?.timeline.find((event) => event.event === "deferred")).toMatchObject({ error: held!.message });
      // Not paused: it starts.
      await resume(env.db, env.registry, "queue", "adhoc", "alice");
      await watcher.refresh();
      expect(await gbif!.holdIfPaused(env.registry.get("resolve_taxa"), snapshot, { id: job.id, poolId: "pool-x" }, env.db, env.logger, [])).toBeUndefined();
    } finally {
      await watcher.stop();
    }
  });
});

describe("the main runner's local queue", () => {
  test("a held job of a paused queue it had not seen returns the batch it came with: the other jobs run at once", async ({ env }) => {
    const started: string[] = [];
    const registry = new TaskRegistry([
      ...env.registry.all(),
      registerTask("quick_task", defineTask({ description: "test", payload: Type.Object({ label: Type.String() }), async run({ label }) { started.push(label); } })),
    ]);
    // First in line, in a queue no task defaults to: the main runner learns of its pause only when it holds it.
    await enqueueJob(env.db, registry, "quick_task", { label: "in-qx" }, { queueName: "qx", priority: -10 });
    await pause(env.db, registry, "queue", "qx", "test");
    for (let i = 0; i < 5; i++) await enqueueJob(env.db, registry, "quick_task", { label: `free-${i}` });
    const events: WorkerEvents = new EventEmitter();
    const watcher = new PauseWatcher({ db: env.db, logger: env.logger, events, pollIntervalMs: 500 });
    await watcher.start();
    // One worker, a local queue of 10: the first batch holds the paused job and the five others.
    const worker = await startWorker({ events, pool: env.pool, deps: { ...env.deps, registry }, observers: [], cronItems: [], concurrency: 1, localQueueSize: 10, pollIntervalMs: 500, pauses: watcher });
    try {
      // Without the early return they would wait, locked, for the local queue's 5-minute TTL.
      await waitFor(() => started.length === 5, { timeoutMs: 10_000, message: "the five unpaused jobs to run" });
      expect(started.every((label) => label.startsWith("free"))).toBe(true);
      // Their completions commit a moment after they start: then only the paused one waits.
      await waitFor(async () => (await listJobs(env.db, "quick_task")).length === 1, { message: "the five to complete" });
      await expectEnqueued(env.db, "quick_task", { queue: "qx" });
    } finally {
      await worker.stop();
      await watcher.stop();
    }
  });
});

describe("how an instance learns of a change", () => {
  test("by notification within a second, and by polling alone when it cannot listen", async ({ env }) => {
    const listen = env.derive({ max: 1, applicationName: "test pauses listen", statementTimeoutMs: null });
    const listening = new PauseWatcher({ db: env.db, listenPool: listen.pool, logger: env.logger, pollIntervalMs: 60_000 });
    const polling = new PauseWatcher({ db: env.db, logger: env.logger, pollIntervalMs: 200 });
    await listening.start();
    await polling.start();
    try {
      const started = Date.now();
      await pause(env.db, env.registry, "task", "resolve_taxa", "test");
      await waitFor(() => listening.current().length === 1, { timeoutMs: 5000, message: "the notification" });
      expect(Date.now() - started).toBeLessThan(1000);
      await waitFor(() => polling.current().length === 1, { timeoutMs: 5000, message: "the poll" });
      await resume(env.db, env.registry, "task", "resolve_taxa", "test");
      await waitFor(() => listening.current().length === 0 && polling.current().length === 0, { timeoutMs: 5000, message: "the resume" });
    } finally {
      await listening.stop();
      await polling.stop();
      await listen.close();
    }
  });

  test("a LISTEN connection that drops is opened again at the next poll, and what changed meanwhile is read", async ({ env }) => {
    const listen = env.derive({ max: 1, applicationName: "test pauses reconnect", statementTimeoutMs: null });
    const watcher = new PauseWatcher({ db: env.db, listenPool: listen.pool, logger: env.logger, pollIntervalMs: 300 });
    await watcher.start();
    const listeners = async () => {
      const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity where application_name = 'test pauses reconnect' and query ilike 'listen%'`.execute(env.db);
      return rows.map((row) => row.pid);
    };
    try {
      const [first] = await waitFor(async () => ((await listeners()).length === 1 ? await listeners() : false), { message: "the LISTEN connection" });
      await sql`select pg_terminate_backend(${first!})`.execute(env.db);
      await pause(env.db, env.registry, "group", "gbif", "test");
      await waitFor(() => watcher.current().length === 1, { timeoutMs: 5000, message: "the pause, read by the poll" });
      const [second] = await waitFor(async () => {
        const pids = await listeners();
        return pids.length === 1 && pids[0] !== first ? pids : false;
      }, { timeoutMs: 5000, message: "a new LISTEN connection" });
      expect(second).not.toBe(first);
      await resume(env.db, env.registry, "group", "gbif", "test");
      await waitFor(() => watcher.current().length === 0, { timeoutMs: 5000, message: "the resume" });
    } finally {
      await watcher.stop();
      await listen.close();
    }
  });
});
