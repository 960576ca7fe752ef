/**
 * Stalls of a live instance, across real service processes (heartbeat every second, rescue after 3 s).
 * Before, heartbeats were written from the main event loop and the jobs' own pool: a handler that
 * blocked the loop for 5 s got pools declared dead in both directions, and an instance frozen for
 * 5 s (SIGSTOP, as a long GC or VM pause) had its running job run again while it still ran it,
 * both runs "succeeding". Now beats come from a worker thread with its own connection, and a pool
 * that was declared dead abandons what it was running: it completes nothing it no longer holds.
 */
import { describe, expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { KNOWN_NAMES } from "../../src/demo/fake-gbif.ts";
import { insertTaxa, resetData, test, waitFor, type TestEnv } from "../helpers/env.ts";
import { loadRegistryWithFixtureTasks } from "../helpers/fixture-tasks.ts";
import { findEvents, findPools, freeze, hasSucceeded, holderOf, killInstance, startInstance, WITH_TEST_TASKS, type Instance } from "../helpers/instances.ts";
import { sql } from "kysely";

test.beforeEach(async ({ env }) => {
  await resetData(env);
  await env.db.deleteFrom("observing_jobs.worker_heartbeats").execute();
});

async function enqueueSlowJob(env: TestEnv, name: string, delayMs: number): Promise<string> {
  const [id] = await insertTaxa(env.db, [{ scientific_name: name }]);
  env.gbif.script(name, { delayMs, body: KNOWN_NAMES["Puma concolor"] }, { delayMs, body: KNOWN_NAMES["Puma concolor"] });
  return (await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [id!] }, {}, { source: "cli" })).id;
}

const gbifCalls = (env: TestEnv, name: string) => env.gbif.matchRequests().filter((request) => request.query.get("scientificName") === name).length;

// Two service processes per test on a shared machine: minutes, not the default 30 s.
describe("a stalled but live instance", { timeout: 120_000 }, () => {
  test("a handler blocking the event loop twice the rescue threshold keeps its pools alive and its job runs once", async ({ env }) => {
    let a: Instance | undefined;
    let b: Instance | undefined;
    try {
      a = await startInstance(env.database.url, env.gbif.url, {}, WITH_TEST_TASKS);
      b = await startInstance(env.database.url, env.gbif.url, {}, WITH_TEST_TASKS);
      const registry = await loadRegistryWithFixtureTasks();
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) ids.push((await enqueueJob(env.db, registry, "block_event_loop", { blockMs: 6000, label: String(i) })).id);
      await waitFor(async () => (await Promise.all(ids.map((id) => hasSucceeded(env.db, id)))).every(Boolean), { timeoutMs: 40_000, message: "both blocking jobs to succeed" });
      for (const id of ids) expect((await findEvents(env.db, id)).map((event) => event.event)).toEqual(["enqueued", "started", "succeeded"]);
      const pools = [...(await findPools(env.db, a.pid)), ...(await findPools(env.db, b.pid))];
      expect(pools.map((pool) => pool.status)).toEqual(pools.map(() => "live"));
      expect(a.output() + b.output()).not.toMatch(/declared a silent worker pool dead|this worker pool was declared dead/);
    } finally {
      await killInstance(a);
      await killInstance(b);
    }
  });

  test("frozen for less than the rescue threshold, it finishes its job and nothing runs twice", async ({ env }) => {
    let a: Instance | undefined;
    let b: Instance | undefined;
    // Beats every 500 ms, rescue after 4 s: a 2 s freeze stays well inside.
    const settings = { HEARTBEAT_INTERVAL_MS: "500", RESCUE_AFTER_MS: "4000" };
    try {
      [a, b] = await Promise.all([startInstance(env.database.url, env.gbif.url, settings), startInstance(env.database.url, env.gbif.url, settings)]);
      const jobId = await enqueueSlowJob(env, "Puma concolor", 4000);
      const { holder } = await holderOf(env.db, jobId, [a, b]);
      await freeze(holder, 2000);
      expect(await hasSucceeded(env.db, jobId)).toBe(false); // the freeze caught the job mid-run
      await waitFor(() => hasSucceeded(env.db, jobId), { timeoutMs: 20_000, message: "the job to succeed" });
      expect((await findEvents(env.db, jobId)).map((event) => event.event)).toEqual(["enqueued", "started", "succeeded"]);
      expect(gbifCalls(env, "Puma concolor")).toBe(1);
      expect((await findPools(env.db, holder.pid)).map((pool) => pool.status)).toEqual(["live", "live"]);
    } finally {
      await killInstance(a);
      await killInstance(b);
    }
  });

  test("frozen for longer, its job runs again elsewhere; on waking it abandons its attempt and completes nothing", async ({ env }) => {
    let a: Instance | undefined;
    let b: Instance | undefined;
    try {
      [a, b] = await Promise.all([startInstance(env.database.url, env.gbif.url), startInstance(env.database.url, env.gbif.url)]);
      const jobId = await enqueueSlowJob(env, "Felis concolor", 4000);
      const { holder, poolId } = await holderOf(env.db, jobId, [a, b]);
      const poolOfA = { pool_id: poolId };
      // Frozen past the 3 s threshold: the other sweeper releases the job and its instance runs it
      // (GBIF answers the frozen one meanwhile, so on waking its handler finds the answer waiting).
      await freeze(holder, 7000);
      await waitFor(() => hasSucceeded(env.db, jobId), { timeoutMs: 20_000, message: "the job to succeed on the second instance" });
      await waitFor(async () => (await findEvents(env.db, jobId)).some((event) => event.event === "abandoned"), { message: "the frozen attempt to be recorded as abandoned" });

      const events = await findEvents(env.db, jobId);
      const byEvent = (name: string) => events.filter((event) => event.event === name);
      expect(byEvent("started").map((event) => event.attempt)).toEqual([1, 2]);
      expect(byEvent("rescued")).toEqual([expect.objectContaining({ actor: "sweeper", worker_id: poolOfA.pool_id, attempt: 1 })]);
      // One success, by the pool that held the job; the frozen one's attempt is abandoned, not succeeded.
      expect(byEvent("succeeded")).toEqual([expect.objectContaining({ attempt: 2 })]);
      expect(byEvent("started")[1]!.worker_id).not.toBe(poolOfA.pool_id);
      expect(byEvent("abandoned")).toEqual([expect.objectContaining({ attempt: 1, worker_id: poolOfA.pool_id, error: expect.stringMatching(/attempt abandoned: worker pool .* was declared dead/) })]);
      // The frozen pool learnt it no longer held the job before it tried to complete it: the
      // database's fence (test/worker/job-control.test.ts) had nothing to refuse.
      const { rows: fenced } = await sql<{ n: number }>`select count(*)::int as n from observing_jobs.fenced_completions where job_id = ${jobId}`.execute(env.db);
      expect(fenced[0]!.n).toBe(0);
      // The job's result is the second attempt's: the abandoned one kept none.
      const { rows: kept } = await sql<{ result_worker_id: string; result_attempt: number }>`
        select result_worker_id, result_attempt from observing_jobs.job_records where id = ${jobId}::bigint`.execute(env.db);
      expect(kept[0]).toEqual({ result_worker_id: byEvent("started")[1]!.worker_id, result_attempt: 2 });
      expect((await findJob(env.db, jobId))?.result).toMatchObject({ requested: 1, worked: 1, taxa: [{ status: "resolved", acceptedName: "Puma concolor" }] });
      // The frozen instance restarts with new pools and works on.
      await waitFor(async () => (await findPools(env.db, holder.pid)).filter((pool) => pool.status === "live").length === 2, { message: "its runners to restart with new pools" });
      expect((await findPools(env.db, holder.pid)).find((pool) => pool.pool_id === poolOfA.pool_id)!.status).toBe("dead");
    } finally {
      await killInstance(a);
      await killInstance(b);
    }
  });
});
