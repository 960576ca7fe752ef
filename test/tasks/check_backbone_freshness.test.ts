import { beforeEach, describe, expect } from "vitest";
import type { NewTaxon } from "../../src/db/tables/taxa.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { expectEnqueuedMany } from "../helpers/enqueued.ts";
import { findTaxon, insertTaxa, listJobs, performTask, resetData, resolvedTaxon, runDueJobs, test, type TestEnv } from "../helpers/env.ts";

beforeEach<{ env: TestEnv }>(async ({ env }) => {
  await resetData(env);
});

const DAY = 86_400_000;

/** A resolved backbone row the app observed yesterday (hot by the default definition). */
function hot(key: string, overrides: Partial<NewTaxon> = {}): NewTaxon {
  return resolvedTaxon(key, { usage_status: "ACCEPTED", last_observed_at: new Date(Date.now() - DAY), ...overrides });
}

/** The resolve_taxa batch a check enqueues for the rows it flipped: keyed by its work, with resolve_taxa's defaults. */
function reResolve(taxonIds: number[]) {
  return {
    key: expect.stringMatching(new RegExp(`^resolve_taxa:${taxonIds[0]}-${taxonIds.at(-1)}:${taxonIds.length}:[A-Za-z0-9_-]{22}$`)),
    payload: { taxonIds, force: false, limit: 100 },
  };
}

describe("check_backbone_freshness compares stored keys with GBIF", () => {
  test("an unchanged key is recorded as current with the time, and the row stays resolved", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [hot("2435099", { scientific_name: "Puma concolor" })]);
    await performTask(env, "check_backbone_freshness", {});
    expect(await findTaxon(env.db, id!)).toMatchObject({ status: "resolved", backbone_status: "current", backbone_note: null, backbone_checked_at: expect.any(Date) });
    expect(env.gbif.usageRequests()).toEqual(["2435099"]);
    expect(env.gbif.requests[0]!.headers["user-agent"]).toMatch(/^observing-jobs\//);
    expect(await listJobs(env.db, "resolve_taxa")).toHaveLength(0);
  });

  test("a deleted key, a key gone (404) and a key turned synonym flip their rows back to unresolved and re-resolve them", async ({ env }) => {
    const [deleted, gone, synonym] = await insertTaxa(env.db, [
      hot("3119195", { scientific_name: "Helianthus annuus", thumbnail_refreshed_at: new Date(), iucn_synced_at: new Date() }),
      hot("999999999"),
      hot("8933000", { scientific_name: "Fringilla domestica" }),
    ]);
    await performTask(env, "check_backbone_freshness", {});

    expect(await findTaxon(env.db, deleted!)).toMatchObject({
      status: "unresolved",
      backbone_status: "deleted",
      backbone_note: "GBIF deleted usage 3119195 on 2018-02-01T17:21:05.471+00:00",
      backbone_checked_at: expect.any(Date),
      // What was derived from the old key is due again once the row is resolved anew.
      thumbnail_refreshed_at: null,
      iucn_synced_at: null,
    });
    expect(await findTaxon(env.db, gone!)).toMatchObject({ status: "unresolved", backbone_status: "not_found", backbone_note: "GBIF has no usage 999999999 (404)" });
    expect(await findTaxon(env.db, synonym!)).toMatchObject({
      status: "unresolved",
      backbone_status: "synonym",
      backbone_note: "GBIF usage 8933000 is now HOMOTYPIC_SYNONYM of 5231190 (Passer domesticus (Linnaeus, 1758))",
    });
    await expectEnqueuedMany(env.db, "resolve_taxa", [reResolve([deleted!, gone!, synonym!])]);
  });

  test("a row resolved as that synonym, recording the same accepted usage, is current", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [hot("8933000", { gbif_accepted_usage_key: "5231190", usage_status: "HOMOTYPIC_SYNONYM" })]);
    await performTask(env, "check_backbone_freshness", {});
    expect(await findTaxon(env.db, id!)).toMatchObject({ status: "resolved", backbone_status: "current" });
  });

  test("hot means observed within hotWithinDays or observed hotMinObservations times; only backbone keys are checked", async ({ env }) => {
    const [recent, often, cold, , , checked] = await insertTaxa(env.db, [
      hot("2435099"),
      hot("2435099", { last_observed_at: null, observation_count: 150 }),
      hot("2435099", { last_observed_at: new Date(Date.now() - 90 * DAY), observation_count: 3 }),
      hot("C6YH2", { gbif_checklist_key: "7ddf754f-d193-4cc9-b351-99906754a03b" }),
      hot("2435099", { status: "needs_review" }),
      hot("2435099", { backbone_checked_at: new Date(Date.now() - DAY) }),
    ]);
    await performTask(env, "check_backbone_freshness", {});
    const checkedIds = (await env.db.selectFrom("taxa").select("id").where("backbone_status", "is not", null).orderBy("id").execute()).map((r) => r.id);
    expect(checkedIds).toEqual([recent, often]);

    // The thresholds are payload options; explicit ids are checked whatever their heat.
    await performTask(env, "check_backbone_freshness", { hotWithinDays: 120 });
    expect((await findTaxon(env.db, cold!)).backbone_status).toBe("current");
    await performTask(env, "check_backbone_freshness", { taxonIds: [checked!], force: true });
    expect((await findTaxon(env.db, checked!)).backbone_status).toBe("current");
  });
});

describe("check_backbone_freshness under GBIF failures", () => {
  test("a 503 fails the job for a retry; rows done stay done and the flipped ones are re-resolved anyway", async ({ env }) => {
    const ids = await insertTaxa(env.db, [hot("3119195"), hot("2435099")]);
    env.gbif.script("2435099", { status: 503, body: { error: "down" } });
    await expect(performTask(env, "check_backbone_freshness", { taxonIds: ids })).rejects.toThrow(/GBIF: HTTP 503.*recorded 1 of 2 rows/);
    expect((await findTaxon(env.db, ids[0]!)).backbone_status).toBe("deleted");
    expect((await findTaxon(env.db, ids[1]!)).backbone_checked_at).toBeNull();
    await expectEnqueuedMany(env.db, "resolve_taxa", [reResolve([ids[0]!])]);

    env.gbif.requests.length = 0;
    await performTask(env, "check_backbone_freshness", { taxonIds: ids });
    expect(env.gbif.usageRequests()).toEqual(["2435099"]);
  });

  test("a 404 that is not GBIF's 'Entity not found' is a per-row error, never a flip", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [hot("2435099")]);
    env.gbif.script("2435099", { status: 404, body: { message: "Not found: /v1/species/2435099" } });
    await performTask(env, "check_backbone_freshness", { taxonIds: [id] });
    expect(await findTaxon(env.db, id!)).toMatchObject({ status: "resolved", backbone_status: "error", backbone_checked_at: null, backbone_note: expect.stringMatching(/not GBIF's "Entity not found"/) });
  });
});

describe("check_backbone_freshness through the queue", () => {
  test("the sweep checks hot rows, and resolve_taxa then re-resolves the deleted key's name", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [hot("3119195", { scientific_name: "Helianthus annuus" })]);
    const job = await enqueueJob(env.db, env.registry, "check_backbone_freshness", {});
    expect(job).toMatchObject({ queueName: null, maxAttempts: 8 });
    await runDueJobs(env);
    expect(await listJobs(env.db)).toHaveLength(0);
    // The v2 match gives the name's current backbone key.
    expect(await findTaxon(env.db, id!)).toMatchObject({ status: "resolved", gbif_usage_key: "9206251", backbone_status: "deleted" });
  });

  test("a sweep larger than a batch fans out into keyed batch jobs", async ({ env }) => {
    await insertTaxa(env.db, Array.from({ length: 3 }, () => hot("2435099")));
    await performTask(env, "check_backbone_freshness", { limit: 2 });
    const batch = (taxonIds: number[]) => ({
      key: expect.stringMatching(new RegExp(`^check_backbone_freshness:${taxonIds[0]}-${taxonIds.at(-1)}:${taxonIds.length}:[A-Za-z0-9_-]{22}$`)),
      payload: { taxonIds, limit: 2, hotWithinDays: 30, hotMinObservations: 100, staleAfterDays: 7, force: false },
    });
    await expectEnqueuedMany(env.db, "check_backbone_freshness", [batch([1, 2]), batch([3])]);
    await runDueJobs(env);
    expect(await listJobs(env.db)).toHaveLength(0);
    expect(env.gbif.usageRequests()).toHaveLength(3);
  });
});
