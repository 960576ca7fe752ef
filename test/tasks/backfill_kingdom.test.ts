import { runOnce } from "graphile-worker";
import { expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { cancelJob, findJob } from "../../src/lifecycle/jobs.ts";
import { makeWorkerLogger } from "../../src/observability/logger.ts";
import { makeTaskList } from "../../src/worker/worker.ts";
import { AUTH, buildTestApp } from "../helpers/app.ts";
import { expectEnqueuedMany } from "../helpers/enqueued.ts";
import { FLUSHING_PRESET, findTaxon, insertTaxa, listJobs, resetData, runDueJobs, test, type TestEnv } from "../helpers/env.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

/** Runs only the backfill jobs that are due, leaving the batches they enqueue waiting. */
async function runBackfillOnly(env: TestEnv): Promise<void> {
  const taskList = makeTaskList([env.registry.get("backfill_kingdom")], env.deps, []);
  await runOnce({ pgPool: env.pool, taskList, logger: makeWorkerLogger(env.logger), preset: FLUSHING_PRESET });
}

async function seed(env: TestEnv): Promise<number[]> {
  const plants = await insertTaxa(env.db, Array.from({ length: 25 }, () => ({ scientific_name: "Helianthus annuus", kingdom_hint: "Plantae" })));
  await insertTaxa(env.db, Array.from({ length: 5 }, () => ({ scientific_name: "Puma concolor", kingdom_hint: "Animalia" })));
  return plants;
}

test("fans out keyed resolve_taxa batches for that kingdom only, without duplicates when triggered again", async ({ env }) => {
  await seed(env);
  const backfill = await enqueueJob(env.db, env.registry, "backfill_kingdom", { kingdom: "plantae", batchSize: 10 });
  await runBackfillOnly(env);
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, index) => from + index);
  const expected = [range(1, 10), range(11, 20), range(21, 25)].map((taxonIds) => ({
    key: expect.stringMatching(new RegExp(`^backfill_kingdom:plantae:${taxonIds[0]}-${taxonIds.at(-1)}:${taxonIds.length}:[A-Za-z0-9_-]{22}$`)),
    // The kingdom goes on as the hint it was given; resolve_taxa's own defaults are filled in.
    payload: { taxonIds, kingdom: "plantae", force: true, limit: 100 },
  }));
  const batches = await expectEnqueuedMany(env.db, "resolve_taxa", expected);
  expect((await findJob(env.db, backfill.id))!.children).toEqual({ total: 3, waiting: 3, running: 0, succeeded: 0, dead: 0, cancelled: 0, discarded: 0 });

  const again = await enqueueJob(env.db, env.registry, "backfill_kingdom", { kingdom: "Plantae", batchSize: 10 });
  await runBackfillOnly(env);
  // Replaced in place: the same jobs (ids), with the keys and payloads of the new trigger.
  const replaced = await expectEnqueuedMany(env.db, "resolve_taxa", expected.map((job) => ({ ...job, payload: { ...job.payload, kingdom: "Plantae" } })));
  expect(replaced.map((job) => job.key)).toEqual(batches.map((job) => job.key));
  expect(replaced.map((job) => job.id)).toEqual(batches.map((job) => job.id));
  expect(again.id).not.toBe(backfill.id);
});

test("reports progress through the job API as its batches run", async ({ env }) => {
  const plants = await seed(env);
  const app = await buildTestApp(env);
  try {
    const response = await app.inject({ method: "POST", url: "/jobs/backfill_kingdom", headers: AUTH, payload: { kingdom: "Plantae", batchSize: 10 } });
    expect(response.statusCode).toBe(202);
    const { jobId } = response.json();
    await runBackfillOnly(env);
    env.gbif.script("Helianthus annuus", { status: 503, body: {} });
    // One batch fails for good (one attempt), the other two succeed.
    await env.db.updateTable("taxa").set({ scientific_name: "Helianthus annuus" }).execute();
    const [first] = await listJobs(env.db, "resolve_taxa");
    await env.pool.query("select graphile_worker.reschedule_jobs(array[$1::bigint], max_attempts => 1)", [first!.id]);
    await runDueJobs(env);

    const details = (await app.inject({ method: "GET", url: `/jobs/${jobId}`, headers: AUTH })).json();
    expect(details).toMatchObject({ task: "backfill_kingdom", state: "succeeded", children: { total: 3, succeeded: 2, dead: 1, waiting: 0 } });
    expect((await findTaxon(env.db, plants[24]!)).status).toBe("resolved");
  } finally {
    await app.close();
  }
});

test("can be cancelled: the batches that have not started are removed", async ({ env }) => {
  await seed(env);
  const backfill = await enqueueJob(env.db, env.registry, "backfill_kingdom", { kingdom: "Plantae", batchSize: 10 });
  await runBackfillOnly(env);
  const details = await cancelJob(env.db, backfill.id, "ops@observing.example");
  expect(details).toMatchObject({ state: "succeeded", children: { total: 3, cancelled: 3, waiting: 0 } });
  expect(await listJobs(env.db, "resolve_taxa")).toHaveLength(0);
  const batch = (await env.db.selectFrom("observing_jobs.job_records").select("id").where("parent_id", "=", backfill.id).executeTakeFirstOrThrow()).id;
  expect((await findJob(env.db, String(batch)))!.timeline.at(-1)).toMatchObject({ event: "cancelled", actor: "ops@observing.example" });
  await expect(cancelJob(env.db, backfill.id, "ops")).rejects.toThrow(/cannot cancel job \d+: it is succeeded/);
});
