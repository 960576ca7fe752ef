/**
 * A global concurrency cap holds across service instances: three instances, each with a `gbif`
 * runner of two workers, never have more than two GBIF jobs running at once between them, and the
 * slots of an instance killed while it held them come back with the rescue.
 */
import { sql } from "kysely";
import { expect } from "vitest";
import { enqueueJobs } from "../../src/enqueue.ts";
import { listGlobalCaps } from "../../src/db/repositories/global-caps.ts";
import { insertTaxa, resetData, test, waitFor } from "../helpers/env.ts";
import { findPools, killInstance, startInstance, type Instance } from "../helpers/instances.ts";

const BATCHES = 50;
/** Long enough that every instance's workers poll while the slots are taken. */
const GBIF_DELAY_MS = 250;

test("a global cap of 2 holds across three instances, and a SIGKILLed instance's slots are released by the rescue", { timeout: 150_000 }, async ({ env }) => {
  await resetData(env);
  await sql`truncate observing_jobs.global_caps cascade`.execute(env.db);
  const instances: Instance[] = [];
  try {
    // One GBIF call at a time per instance (each batch is one row): GBIF's calls in flight are the jobs running.
    for (let i = 0; i < 3; i++) instances.push(await startInstance(env.database.url, env.gbif.url, { GBIF_CONCURRENCY: "1" }));
    expect(await listGlobalCaps(env.db)).toEqual([{ group: "gbif", slots: 2, inUse: 0 }]);

    const names = Array.from({ length: BATCHES }, (_, i) => `Capped species ${i}`);
    for (const name of names) env.gbif.script(name, { delayMs: GBIF_DELAY_MS, body: { diagnostics: { matchType: "NONE", issues: [], confidence: 100 }, synonym: false } });
    const ids = await insertTaxa(env.db, names.map((name) => ({ scientific_name: name })));
    const jobs = await enqueueJobs(env.db, env.registry, "resolve_taxa", ids.map((id) => ({ taxonIds: [id], force: true })), {}, { source: "cli" });
    const jobIds = jobs.map((job) => job.id);
    const succeeded = async () => {
      const { rows } = await sql<{ done: number }>`
        select count(*)::int as done from observing_jobs.job_records where id = any(${jobIds}::bigint[]) and phase = 'succeeded'`.execute(env.db);
      return rows[0]!.done;
    };

    // Kill an instance running a batch (under the cap: holding a slot) once a few batches are done;
    // one that started within 100 ms, so it is still waiting on GBIF when the kill lands.
    await waitFor(async () => (await succeeded()) >= 10, { timeoutMs: 60_000, message: "ten batches to succeed" });
    const holder = await waitFor(async () => {
      const { rows } = await sql<{ pid: number }>`
        select h.pid from graphile_worker._private_jobs j join observing_jobs.worker_heartbeats h on h.pool_id = j.locked_by
        where j.id = any(${jobIds}::bigint[]) and j.locked_at > now() - interval '100 milliseconds'
        limit 1`.execute(env.db);
      return rows[0] && instances.find((instance) => instance.pid === rows[0]!.pid);
    }, { message: "a batch to be running" });
    const doneAtKill = await succeeded();
    const killedPools = (await findPools(env.db, holder.pid)).map((pool) => pool.pool_id);
    await killInstance(holder);
    // Never more than the cap (without it: 3, one per instance). Exactly 2 only when the slots sit on
    // two instances: one instance holding both calls GBIF one at a time (GBIF_CONCURRENCY=1).
    expect(env.gbif.maxInFlight).toBeLessThanOrEqual(2);

    // The killed instance's slot stays taken (its job stays locked) until the rescue releases its job.
    const slotsOfKilled = async () => {
      const { rows } = await sql<{ held: number }>`
        select count(*)::int as held from observing_jobs.global_cap_slots s
        join graphile_worker._private_jobs j on j.id = s.job_id and j.locked_by = s.pool_id
        where s.pool_id = any(${killedPools}::text[])`.execute(env.db);
      return rows[0]!.held;
    };
    expect(await slotsOfKilled()).toBeGreaterThan(0);
    await waitFor(async () => (await slotsOfKilled()) === 0, { timeoutMs: 30_000, message: "the rescue to free the killed instance's slots" });
    const { rows: rescued } = await sql<{ count: number }>`
      select count(*)::int from observing_jobs.job_events where job_id = any(${jobIds}::bigint[]) and event = 'rescued'`.execute(env.db);
    expect(rescued[0]!.count).toBeGreaterThan(0);
    // Both slots work again, shared by the two instances left, and the cap still holds.
    env.gbif.maxInFlight = 0;
    await waitFor(async () => (await succeeded()) === BATCHES, { timeoutMs: 90_000, message: `all ${BATCHES} batches to succeed` });
    expect(doneAtKill).toBeLessThan(BATCHES - 10);
    expect(env.gbif.maxInFlight).toBeLessThanOrEqual(2);
    // Every name was asked (the interrupted batch's again after the rescue).
    for (const name of names) expect(env.gbif.matchRequests().filter((request) => request.query.get("scientificName") === name).length).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await listGlobalCaps(env.db))[0]!.inUse === 0, { message: "every slot to be free once the queue is empty" });
  } finally {
    for (const instance of instances) await killInstance(instance);
  }
});
