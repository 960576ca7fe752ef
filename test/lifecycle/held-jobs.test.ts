/**
 * With a local queue, a pool locks the jobs it fetches before it starts them: graphile-worker's lock
 * alone no longer says a job runs. Each pool's heartbeat lists the jobs it runs (running_job_ids,
 * migration 0014); every place that reports `running` (the listing, a job's page and timeline, the
 * queue counts of the API, the dashboard and metrics, a fan-out's progress) must agree with it.
 * The locks and beats are written here as graphile-worker's fetch and the heartbeat thread write them.
 */
import { sql } from "kysely";
import { describe, expect } from "vitest";
import { enqueueJob, enqueueJobs } from "../../src/enqueue.ts";
import { cancelJob, findJob, listJobs, type JobState } from "../../src/lifecycle/jobs.ts";
import { AUTH, buildTestApp } from "../helpers/app.ts";
import { loadRegistryWithFixtureTasks } from "../helpers/fixture-tasks.ts";
import { killInstance, startInstance, WITH_TEST_TASKS, type Instance } from "../helpers/instances.ts";
import { capture, planOf } from "../helpers/plans.ts";
import { listJobs as listLockedJobs, resetData, test, waitFor, type TestEnv } from "../helpers/env.ts";
import { signIn } from "../dashboard/helpers.ts";

const LISTING = "pool-listing";
const SILENT = "pool-older-instance";

test.beforeEach(async ({ env }) => {
  await unlockAll(env);
  await resetData(env);
  await env.db.deleteFrom("observing_jobs.worker_heartbeats").execute();
  await beat(env, LISTING, []);
  await beat(env, SILENT, null);
});

/** A pool's heartbeat row, with the jobs it says it runs (null: an instance that does not say). */
async function beat(env: TestEnv, poolId: string, running: string[] | null): Promise<void> {
  await sql`
    insert into observing_jobs.worker_heartbeats (pool_id, runner, instance_id, hostname, pid, running_job_ids)
    values (${poolId}, 'main', 'instance-1', 'host', 1, ${running}::bigint[])
    on conflict (pool_id) do update set running_job_ids = excluded.running_job_ids, last_seen = now()`.execute(env.db);
}

/** What graphile-worker's fetch does to each job it hands a pool: locks it and counts the attempt. */
async function lock(env: TestEnv, poolId: string, ids: string[]): Promise<void> {
  await sql`
    update graphile_worker._private_jobs set locked_at = now(), locked_by = ${poolId}, attempts = attempts + 1
    where id = any(${ids}::bigint[])`.execute(env.db);
}

/** resetData's complete_jobs leaves locked jobs alone. */
async function unlockAll(env: TestEnv): Promise<void> {
  await sql`update graphile_worker._private_jobs set locked_at = null, locked_by = null where locked_at is not null`.execute(env.db);
}

async function stateOf(env: TestEnv, id: string): Promise<JobState | undefined> {
  return (await findJob(env.db, id))?.state;
}

/** Three due jobs, all fetched: one by a pool that runs it, one held in that pool's local queue, one by an older instance. */
async function fetchThree(env: TestEnv) {
  const [running, held, unknown] = await enqueueJobs(env.db, env.registry, "resolve_taxa", [{ taxonIds: [1] }, { taxonIds: [2] }, { taxonIds: [3] }]);
  await lock(env, LISTING, [running!.id, held!.id]);
  await lock(env, SILENT, [unknown!.id]);
  await beat(env, LISTING, [running!.id]);
  return { running: running!.id, held: held!.id, unknown: unknown!.id };
}

describe("a locked job is running only when its pool's heartbeat says so", () => {
  test("findJob: listed is running, not listed is queued (its attempt not begun, no start), a pool that does not say runs all it holds", async ({ env }) => {
    const jobs = await fetchThree(env);
    const held = (await findJob(env.db, jobs.held))!;
    expect(held).toMatchObject({ state: "queued", attempts: 0, startedAt: null });
    expect(held.timeline.map((event) => event.event)).toEqual(["enqueued"]);

    const running = (await findJob(env.db, jobs.running))!;
    expect(running).toMatchObject({ state: "running", attempts: 1 });
    expect(running.startedAt).toBeInstanceOf(Date);
    expect(running.timeline.map((event) => event.event)).toEqual(["enqueued", "started"]);
    expect(running.timeline[1]).toMatchObject({ id: "started-1", attempt: 1, worker_id: LISTING });

    expect(await stateOf(env, jobs.unknown)).toBe("running");

    // The pool starts the held job: its next beat lists it, and from then it runs, with its start.
    await beat(env, LISTING, [jobs.running, jobs.held]);
    const started = (await findJob(env.db, jobs.held))!;
    expect(started).toMatchObject({ state: "running", attempts: 1 });
    expect(started.timeline.map((event) => event.event)).toEqual(["enqueued", "started"]);
  });

  test("a job added by plain SQL (no record yet) follows the same rule", async ({ env }) => {
    const { rows } = await sql<{ id: string }>`select id from graphile_worker.add_job('resolve_taxa', '{}'::json)`.execute(env.db);
    const id = String(rows[0]!.id);
    await lock(env, LISTING, [id]);
    expect(await findJob(env.db, id)).toMatchObject({ state: "queued", source: "sql", attempts: 0, startedAt: null });
    await beat(env, LISTING, [id]);
    expect(await findJob(env.db, id)).toMatchObject({ state: "running", source: "sql", attempts: 1 });
  });

  test("a held job on its last attempt is queued, not dead, and the dead-letter does not list it", async ({ env }) => {
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [1] }, { maxAttempts: 1 });
    await lock(env, LISTING, [job.id]);
    expect(await findJob(env.db, job.id)).toMatchObject({ state: "queued", attempts: 0, maxAttempts: 1 });
    expect((await listJobs(env.db, { state: "dead", limit: 10 })).jobs).toEqual([]);
  });

  test("listJobs: state=running lists only what pools run, state=queued includes what they hold", async ({ env }) => {
    const jobs = await fetchThree(env);
    const waiting = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [4] });
    const ids = async (state: JobState) => (await listJobs(env.db, { state, limit: 10 })).jobs.map((job) => job.id).sort();
    expect(await ids("running")).toEqual([jobs.running, jobs.unknown].sort());
    expect(await ids("queued")).toEqual([jobs.held, waiting.id].sort());
    const all = await listJobs(env.db, { limit: 10 });
    expect(Object.fromEntries(all.jobs.map((job) => [job.id, job.state]))).toEqual({
      [jobs.running]: "running",
      [jobs.held]: "queued",
      [jobs.unknown]: "running",
      [waiting.id]: "queued",
    });
  });

  test("queue stats count a held job as ready (and in the lag), never as running", async ({ env }) => {
    await fetchThree(env);
    const { depths } = await env.queueStats.read();
    expect(depths).toEqual([expect.objectContaining({ task: "resolve_taxa", queue: null, ready: 1, running: 2, scheduled: 0, retryWait: 0, dead: 0 })]);
    expect(depths[0]!.oldestReadyAgeSeconds).toEqual(expect.any(Number));
  });

  test("a fan-out's progress counts its held children as waiting", async ({ env }) => {
    const parent = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [9] });
    const children = await enqueueJobs(env.db, env.registry, "resolve_taxa", [{ taxonIds: [1] }, { taxonIds: [2] }, { taxonIds: [3] }], {}, { source: "task", parentId: parent.id });
    const [running, held, unknown] = children.map((child) => child.id);
    await lock(env, LISTING, [running!, held!]);
    await lock(env, SILENT, [unknown!]);
    await beat(env, LISTING, [running!]);
    expect((await findJob(env.db, parent.id))!.children).toMatchObject({ total: 3, waiting: 1, running: 2 });
  });

  test("cancelling a held job is refused, saying a worker has fetched it", async ({ env }) => {
    const jobs = await fetchThree(env);
    await expect(cancelJob(env.db, jobs.held, "bob")).rejects.toThrow(
      new RegExp(`cannot cancel job ${jobs.held}: it is queued, but a worker has already fetched it to run next`),
    );
    expect(await stateOf(env, jobs.held)).toBe("queued");
  });

  test("the rule costs a locked job one probe of the heartbeats by pool id", async ({ env }) => {
    await fetchThree(env);
    for (const state of ["running", "queued"] as const) {
      const [live] = await capture(env, (db) => listJobs(db, { state, limit: 50 }));
      const plan = await planOf(env, live!);
      expect(plan, live!.sql).toMatch(/Index Cond: \(pool_id = jobs\.locked_by\)/);
      expect(plan, live!.sql).not.toMatch(/Seq Scan on (job_records|job_events|worker_heartbeats)/);
    }
  });
});

describe("what the API, the dashboard and metrics show", () => {
  test("GET /jobs, GET /jobs/{id} and GET /queues", async ({ env }) => {
    const jobs = await fetchThree(env);
    const app = await buildTestApp(env);
    try {
      const running = await app.inject({ method: "GET", url: "/jobs?state=running", headers: AUTH });
      expect(running.statusCode).toBe(200);
      expect(running.json<{ jobs: Array<{ id: string }> }>().jobs.map((job) => job.id).sort()).toEqual([jobs.running, jobs.unknown].sort());
      const queued = await app.inject({ method: "GET", url: "/jobs?state=queued", headers: AUTH });
      expect(queued.json<{ jobs: Array<{ id: string }> }>().jobs.map((job) => job.id)).toEqual([jobs.held]);

      const held = await app.inject({ method: "GET", url: `/jobs/${jobs.held}`, headers: AUTH });
      expect(held.json()).toMatchObject({ state: "queued", attempts: 0, startedAt: null });
      expect(held.json<{ timeline: Array<{ event: string }> }>().timeline.map((event) => event.event)).toEqual(["enqueued"]);
      expect((await app.inject({ method: "GET", url: `/jobs/${jobs.running}`, headers: AUTH })).json()).toMatchObject({ state: "running" });
      expect((await app.inject({ method: "GET", url: `/jobs/${jobs.unknown}`, headers: AUTH })).json()).toMatchObject({ state: "running" });

      const cancel = await app.inject({ method: "POST", url: `/jobs/${jobs.held}/cancel`, headers: AUTH });
      expect(cancel.statusCode).toBe(409);
      expect(cancel.json()).toMatchObject({ state: "queued", message: expect.stringMatching(/a worker has already fetched it/) });

      const queues = await app.inject({ method: "GET", url: "/queues", headers: AUTH });
      expect(queues.json<{ queues: unknown[] }>().queues).toEqual([expect.objectContaining({ task: "resolve_taxa", ready: 1, running: 2 })]);
    } finally {
      await app.close();
    }
  });

  test("the dashboard's overview, queues, job list and job page", async ({ env }) => {
    const jobs = await fetchThree(env);
    const app = await buildTestApp(env);
    try {
      const { cookie } = await signIn(app);
      const get = async (url: string) => {
        const response = await app.inject({ method: "GET", url, headers: { cookie } });
        expect(response.statusCode, url).toBe(200);
        return response.body;
      };
      const overview = await get("/dashboard");
      expect(overview).toMatch(/data-count="queued">1</);
      expect(overview).toMatch(/data-count="running">2</);

      // Columns: queue, task, ready, scheduled, running, retry wait, dead, lag.
      const queues = await get("/dashboard/queues");
      expect(queues).toMatch(/<td data-label="Ready">1<\/td><td data-label="Scheduled">0<\/td><td data-label="Running">2<\/td>/);

      const runningList = await get("/dashboard/jobs?state=running");
      expect(jobLinks(runningList)).toEqual([jobs.running, jobs.unknown].sort());
      expect(jobLinks(await get("/dashboard/jobs?state=queued"))).toEqual([jobs.held]);

      const heldPage = await get(`/dashboard/jobs/${jobs.held}`);
      expect(heldPage).toMatch(/data-job-state="queued"/);
      expect(heldPage).not.toMatch(/data-event="started"/);
      const runningPage = await get(`/dashboard/jobs/${jobs.running}`);
      expect(runningPage).toMatch(/data-job-state="running"/);
      expect(runningPage).toMatch(/data-event="started"/);
    } finally {
      await app.close();
    }
  });

  test("the queue gauges of /metrics", async ({ env }) => {
    await fetchThree(env);
    const app = await buildTestApp(env);
    try {
      const text = (await app.inject({ method: "GET", url: "/metrics", headers: AUTH })).body;
      expect(text).toContain('observing_jobs_queue_jobs{task="resolve_taxa",queue="",state="ready"} 1\n');
      expect(text).toContain('observing_jobs_queue_jobs{task="resolve_taxa",queue="",state="running"} 2\n');
    } finally {
      await app.close();
    }
  });
});

describe("a real instance with a local queue", () => {
  test("of three jobs it fetched with one slot, its heartbeat makes one running and two queued", async ({ env }) => {
    let instance: Instance | undefined;
    try {
      instance = await startInstance(env.database.url, env.gbif.url, { WORKER_CONCURRENCY: "1", WORKER_LOCAL_QUEUE_SIZE: "3" }, WITH_TEST_TASKS);
      const registry = await loadRegistryWithFixtureTasks();
      const jobs = await enqueueJobs(env.db, registry, "block_event_loop", [1, 2, 3].map((n) => ({ blockMs: 0, waitMs: 10_000, label: `job ${n}` })));
      const ids = jobs.map((job) => job.id);
      // All three locked by the main runner's pool in one fetch, one of them started (each runs 10 s: the
      // checks below are done long before the first ends).
      const seen = await waitFor(
        async () => {
          const locked = (await listLockedJobs(env.db, "block_event_loop")).filter((job) => job.locked_by !== null);
          const running = (await listJobs(env.db, { state: "running", task: "block_event_loop", limit: 10 })).jobs.map((job) => job.id);
          const queued = (await listJobs(env.db, { state: "queued", task: "block_event_loop", limit: 10 })).jobs.map((job) => job.id);
          return locked.length === 3 && running.length === 1 && queued.length === 2 && { pool: locked[0]!.locked_by!, running: running[0]!, queued };
        },
        { timeoutMs: 15_000, message: "three locked jobs, one of them running" },
      );
      expect([seen.running, ...seen.queued].sort()).toEqual([...ids].sort());
      const beat = await env.db.selectFrom("observing_jobs.worker_heartbeats").select("running_job_ids").where("pool_id", "=", seen.pool).executeTakeFirstOrThrow();
      expect(beat.running_job_ids?.map(String)).toEqual([seen.running]);
      for (const id of seen.queued) expect(await findJob(env.db, id)).toMatchObject({ state: "queued", attempts: 0, startedAt: null });
    } finally {
      await killInstance(instance);
    }
  });
});

/** The job ids a dashboard job list links to, sorted. */
function jobLinks(body: string): string[] {
  return [...new Set([...body.matchAll(/href="\/dashboard\/jobs\/(\d+)"/g)].map((match) => match[1]!))].sort();
}
