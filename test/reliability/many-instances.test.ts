/**
 * Two service processes on one database: every job runs exactly once, a cron tick fires once in
 * total (graphile-worker's known crontabs decide which instance schedules it), and both instances'
 * pools stay live under each other's sweeper.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { sql } from "kysely";
import { expect } from "vitest";
import { enqueueJobs } from "../../src/enqueue.ts";
import { insertTaxa, resetData, test, waitFor } from "../helpers/env.ts";
import { findPools, killInstance, readiness, startInstance, type Instance } from "../helpers/instances.ts";

const JOBS = 120;

test("two instances run each job once and each cron tick once", { timeout: 120_000 }, async ({ env }) => {
  await resetData(env);
  const directory = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-crontab-"));
  const instances: Instance[] = [];
  try {
    const crontab = path.join(directory, "crontab");
    await writeFile(crontab, "* * * * * prune_job_history ?id=prune_every_minute\n");
    for (let i = 0; i < 2; i++) instances.push(await startInstance(env.database.url, env.gbif.url, { CRONTAB_FILE: crontab }));
    const bothRunningSince = new Date();

    const names = Array.from({ length: JOBS }, (_, i) => `Twice species ${i}`);
    const ids = await insertTaxa(env.db, names.map((name) => ({ scientific_name: name })));
    const jobs = await enqueueJobs(env.db, env.registry, "resolve_taxa", ids.map((id) => ({ taxonIds: [id], force: true })), {}, { source: "cli" });
    await waitFor(
      async () => {
        const { rows } = await sql<{ done: number }>`
          select count(*)::int as done from observing_jobs.job_records where id = any(${jobs.map((job) => job.id)}::bigint[]) and phase = 'succeeded'`.execute(env.db);
        return rows[0]!.done === JOBS;
      },
      { timeoutMs: 60_000, message: `all ${JOBS} jobs to succeed` },
    );
    // One attempt each, never rescued or retried.
    const { rows: starts } = await sql<{ id: string; attempts: number; other_events: number }>`
      select id, attempts, (select count(*)::int from observing_jobs.job_events e where e.job_id = r.id) as other_events
      from observing_jobs.job_records r where id = any(${jobs.map((job) => job.id)}::bigint[])`.execute(env.db);
    expect(starts).toHaveLength(JOBS);
    expect(starts.filter((row) => row.attempts !== 1 || row.other_events !== 0)).toEqual([]);
    expect(new Set(names.map((name) => env.gbif.matchRequests().filter((request) => request.query.get("scientificName") === name).length))).toEqual(new Set([1]));
    // Both instances did work.
    const { rows: byInstance } = await sql<{ pid: number }>`
      select distinct h.pid from observing_jobs.job_records r join observing_jobs.worker_heartbeats h on h.pool_id = r.worker_id
      where r.task = 'resolve_taxa'`.execute(env.db);
    expect(byInstance.map((row) => row.pid).sort()).toEqual(instances.map((instance) => instance.pid).sort());

    // The first minute that both instances' cron loops were running for.
    const tick = new Date(Math.ceil((bothRunningSince.getTime() + 1) / 60_000) * 60_000).toISOString();
    const cronJobsAt = async () => {
      const { rows } = await sql<{ id: string; phase: string }>`
        select id, phase from observing_jobs.job_records where task = 'prune_job_history' and payload -> '_cron' ->> 'ts' = ${tick}`.execute(env.db);
      return rows;
    };
    await waitFor(async () => (await cronJobsAt()).some((job) => job.phase === "succeeded"), { timeoutMs: 75_000, message: `the cron tick of ${tick} to run` });
    // Both loops fired for that minute: readiness shows each one's last `cron:scheduled` (after its
    // database write), so once both are past the tick a duplicate would be there already.
    const scheduledAt = async (instance: Instance) => {
      const detail = ((await readiness(instance)).body.checks as { cron: { detail?: string } }).cron.detail ?? "";
      const match = /^scheduled at (.+)$/.exec(detail);
      return match ? new Date(match[1]!).getTime() : 0;
    };
    for (const instance of instances) {
      await waitFor(async () => (await scheduledAt(instance)) >= Date.parse(tick), { timeoutMs: 10_000, message: "both cron loops to pass the tick" });
    }
    expect(await cronJobsAt()).toHaveLength(1);

    for (const instance of instances) {
      expect((await findPools(env.db, instance.pid)).map((pool) => pool.status)).toEqual(["live", "live"]);
    }
  } finally {
    for (const instance of instances) await killInstance(instance);
    await rm(directory, { recursive: true, force: true });
  }
});
