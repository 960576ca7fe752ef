import { spawnSync } from "node:child_process";
import { sql } from "kysely";
import { describe, expect } from "vitest";
import { checkCrontab } from "../../src/cron/crontab.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { buildApp } from "../../src/http/app.ts";
import { makeCronFreshness } from "../../src/cron/freshness.ts";
import { listGlobalCaps, recordGlobalCaps } from "../../src/db/repositories/global-caps.ts";
import { pause, resume } from "../../src/lifecycle/pauses.ts";
import { ServiceMetrics } from "../../src/observability/metrics.ts";
import { listWorkerPools } from "../../src/reliability/heartbeat.ts";
import { AUTH, buildTestApp } from "../helpers/app.ts";
import { IN_CI, insertTaxa, resetData, runDueJobs, test, type TestEnv } from "../helpers/env.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

const promtool = spawnSync("promtool", ["--version"]).status === 0;

/** The value of one sample in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("GET /metrics", () => {
  test("counts attempts and outcomes by task, and shows queue depth", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const before = (await app.inject({ method: "GET", url: "/metrics", headers: AUTH })).body;
      expect(sample(before, 'observing_jobs_jobs_started_total{task="resolve_taxa"}') ?? 0).toBe(0);

      const [ok, failing] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }, { scientific_name: "Felis concolor" }]);
      env.gbif.script("Felis concolor", { status: 503, body: {} });
      await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [ok] });
      await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [failing] }, { maxAttempts: 1 });
      await enqueueJob(env.db, env.registry, "refresh_thumbnails", {}, { runAt: new Date(Date.now() + 3_600_000) });
      await runDueJobs(env);

      const response = await app.inject({ method: "GET", url: "/metrics", headers: AUTH });
      expect(response.statusCode).toBe(200);
      expect(response.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = response.body;
      expect(sample(text, 'observing_jobs_jobs_started_total{task="resolve_taxa"}')).toBe(2);
      expect(sample(text, 'observing_jobs_jobs_succeeded_total{task="resolve_taxa"}')).toBe(1);
      expect(sample(text, 'observing_jobs_jobs_failed_total{task="resolve_taxa"}')).toBe(1);
      expect(sample(text, 'observing_jobs_jobs_exhausted_total{task="resolve_taxa"}')).toBe(1);
      expect(sample(text, 'observing_jobs_job_duration_seconds_count{task="resolve_taxa",outcome="succeeded"}')).toBe(1);
      expect(sample(text, 'observing_jobs_queue_jobs{task="resolve_taxa",queue="",state="dead"}')).toBe(1);
      expect(sample(text, 'observing_jobs_queue_jobs{task="refresh_thumbnails",queue="wikidata",state="scheduled"}')).toBe(1);
      expect(sample(text, 'observing_jobs_queue_oldest_ready_age_seconds{task="resolve_taxa",queue=""}')).toBe(0);
      expect(text).toMatch(/^observing_jobs_process_resident_memory_bytes \d+/m);
      expect((await app.inject({ method: "GET", url: "/metrics" })).statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });

  test.skipIf(!promtool && !IN_CI)("passes promtool check metrics", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      await enqueueJob(env.db, env.registry, "resolve_taxa", { force: true });
      await runDueJobs(env);
      await pause(env.db, env.registry, "group", "gbif", "test");
      await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [1] });
      await enqueueJob(env.db, env.registry, "refresh_thumbnails", {});
      const text = (await app.inject({ method: "GET", url: "/metrics", headers: AUTH })).body;
      await resume(env.db, env.registry, "group", "gbif", "test");
      expect(sample(text, 'observing_jobs_paused{kind="group",name="gbif"}')).toBe(1);
      expect(sample(text, 'observing_jobs_queue_paused{task="resolve_taxa",queue=""}')).toBe(1);
      expect(sample(text, 'observing_jobs_queue_paused{task="refresh_thumbnails",queue="wikidata"}')).toBe(0);
      const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      expect(check.error, "promtool must be installed (Debian's prometheus package; .ci/run installs it)").toBeUndefined();
      expect(check.stdout + check.stderr).toBe("");
      expect(check.status).toBe(0);
    } finally {
      await app.close();
    }
  });
});

test("counts rescues and worker pools by heartbeat status", async ({ env }) => {
  await env.db.deleteFrom("observing_jobs.worker_heartbeats").execute();
  const pool = (id: string, status: "live" | "dead" | "stopped") => ({
    pool_id: id,
    instance_id: "instance-a",
    revision: null,
    hostname: "test",
    pid: 1,
    runner: "main",
    status,
    ended_at: status === "live" ? null : new Date(),
  });
  await env.db.insertInto("observing_jobs.worker_heartbeats").values([pool("pool-1", "live"), pool("pool-2", "live"), pool("pool-3", "dead")]).execute();
  await sql`truncate observing_jobs.global_caps cascade`.execute(env.db);
  await recordGlobalCaps(env.db, [{ group: "gbif", slots: 2 }]);
  // A slot whose job is no longer locked by the pool that took it is free: only the first counts.
  const [held, ended] = await twoQueuedJobs(env);
  await sql`update graphile_worker._private_jobs set locked_by = 'pool-1', locked_at = now() where id = ${held}::bigint`.execute(env.db);
  await sql`update observing_jobs.global_cap_slots set job_id = (array[${held}, ${ended}]::bigint[])[slot + 1], pool_id = 'pool-1' where group_name = 'gbif'`.execute(env.db);
  const metrics = new ServiceMetrics({ queueStats: env.queueStats, cronFreshness: env.cronFreshness, workerPools: () => listWorkerPools(env.db), globalCaps: () => listGlobalCaps(env.db) });
  metrics.rescued.inc(2);
  const text = await metrics.registry.metrics();
  expect(sample(text, 'observing_jobs_worker_pools{status="live"}')).toBe(2);
  expect(sample(text, 'observing_jobs_worker_pools{status="dead"}')).toBe(1);
  expect(sample(text, 'observing_jobs_worker_pools{status="stopped"}')).toBe(0);
  expect(sample(text, "observing_jobs_rescued_jobs_total")).toBe(2);
  expect(sample(text, 'observing_jobs_global_cap_slots{group="gbif"}')).toBe(2);
  expect(sample(text, 'observing_jobs_global_cap_slots_in_use{group="gbif"}')).toBe(1);
  await sql`select graphile_worker.force_unlock_workers(array['pool-1'])`.execute(env.db);
});

/** Two queued jobs' ids. */
async function twoQueuedJobs(env: TestEnv): Promise<[string, string]> {
  const first = await enqueueJob(env.db, env.registry, "prune_job_history", {});
  const second = await enqueueJob(env.db, env.registry, "prune_job_history", {});
  return [first.id, second.id];
}

describe("cron freshness", () => {
  test("an entry whose last success is older than its stale= is reported overdue in metrics, tasks and readiness", async ({ env }) => {
    const crontab = checkCrontab("30 3 * * * resolve_taxa ?id=resolve_nightly_probe&fill=1d&stale=1h", env.registry);
    expect(crontab[0]!.maxStalenessMs).toBe(3_600_000);
    // The service has been up for two hours and the entry never succeeded.
    const cronFreshness = makeCronFreshness(env.db, crontab, { startedAt: new Date(Date.now() - 7_200_000), maxAgeMs: 0 });
    const metrics = new ServiceMetrics({ queueStats: env.queueStats, cronFreshness });
    const app = await buildApp({
      config: { auth: { disabled: false, tokens: [AUTH.authorization.slice(7)], oidc: null }, http: env.config.http },
      logger: env.logger,
      pool: env.pool,
      db: env.db,
      registry: env.registry,
      crontab,
      queueStats: env.queueStats,
      cronFreshness,
      metrics,
      worker: { isRunning: () => true },
    });
    try {
      const overdueSeries = 'observing_jobs_cron_overdue{schedule="resolve_nightly_probe",task="resolve_taxa"}';
      expect(sample((await app.inject({ method: "GET", url: "/metrics", headers: AUTH })).body, overdueSeries)).toBe(1);
      const readiness = await app.inject({ method: "GET", url: "/readyz" });
      expect(readiness.statusCode).toBe(200);
      expect(readiness.json().overdueSchedules).toEqual(["resolve_nightly_probe"]);
      const schedule = (await app.inject({ method: "GET", url: "/tasks", headers: AUTH })).json().tasks.find((task: { name: string }) => task.name === "resolve_taxa").schedules[0];
      expect(schedule).toMatchObject({ id: "resolve_nightly_probe", overdue: true, maxStalenessSeconds: 3600, lastSuccessAt: null });

      // A cron-fired run succeeds: fresh again.
      await sql`select graphile_worker.add_job('resolve_taxa', json_build_object('_cron', json_build_object('ts', now())))`.execute(env.db);
      await runDueJobs(env);
      const text = (await app.inject({ method: "GET", url: "/metrics", headers: AUTH })).body;
      expect(sample(text, overdueSeries)).toBe(0);
      expect(sample(text, 'observing_jobs_cron_last_success_timestamp_seconds{schedule="resolve_nightly_probe",task="resolve_taxa"}')).toBeGreaterThan(Date.now() / 1000 - 60);
      expect((await app.inject({ method: "GET", url: "/readyz" })).json().overdueSchedules).toEqual([]);
    } finally {
      await app.close();
    }
  });

  test("a paused task's entry is not overdue while the pause lasts, and says why", async ({ env }) => {
    const crontab = checkCrontab("30 3 * * * resolve_taxa ?id=resolve_nightly_probe&fill=1d&stale=1h", env.registry);
    const cronFreshness = makeCronFreshness(env.db, crontab, { startedAt: new Date(Date.now() - 7_200_000), maxAgeMs: 0, registry: env.registry });
    expect(await cronFreshness.read()).toMatchObject([{ overdue: true, paused: false }]);
    // Paused through its cap group: resolve_taxa is in "gbif".
    await pause(env.db, env.registry, "group", "gbif", "test", "GBIF is down");
    try {
      expect(await cronFreshness.read()).toMatchObject([{ id: "resolve_nightly_probe", overdue: false, paused: true, overdueSince: null }]);
      const metrics = new ServiceMetrics({ queueStats: env.queueStats, cronFreshness, pauses: async () => [] });
      expect(sample(await metrics.registry.metrics(), 'observing_jobs_cron_overdue{schedule="resolve_nightly_probe",task="resolve_taxa"}')).toBe(0);
    } finally {
      await resume(env.db, env.registry, "group", "gbif", "test");
    }
    expect(await cronFreshness.read()).toMatchObject([{ overdue: true, paused: false }]);
  });

  test("stale= must be a duration", ({ env }) => {
    expect(() => checkCrontab("30 3 * * * resolve_taxa ?id=x&stale=soon", env.registry)).toThrow(/crontab line 1: stale=soon is not a duration such as 26h or 2d/);
  });
});
