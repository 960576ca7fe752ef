import { describe, expect } from "vitest";
import { GBIF_BACKBONE_CHECKLIST_KEY } from "../../src/upstream/gbif.ts";
import { enqueueJob, InvalidPayloadError } from "../../src/enqueue.ts";
import { makeGbifClient } from "../../src/upstream/gbif.ts";
import { expectEnqueuedMany } from "../helpers/enqueued.ts";
import { findTaxon, insertTaxa, listJobs, performTask, resetData, runDueJobs, test } from "../helpers/env.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

describe("resolve_taxa records every kind of GBIF match as what it is", () => {
  test("an exact match is resolved with keys as text, classification and diagnostics", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    await performTask(env, "resolve_taxa", { taxonIds: [id] });

    const row = await findTaxon(env.db, id!);
    expect(row).toMatchObject({
      status: "resolved",
      gbif_usage_key: "2435099",
      gbif_accepted_usage_key: "2435099",
      gbif_checklist_key: GBIF_BACKBONE_CHECKLIST_KEY,
      accepted_name: "Puma concolor",
      rank: "SPECIES",
      usage_status: "ACCEPTED",
      kingdom: "Animalia",
      phylum: "Chordata",
      class: "Mammalia",
      order: "Carnivora",
      family: "Felidae",
      genus: "Puma",
      species: "Puma concolor",
      match_type: "EXACT",
      confidence: 100,
      last_error: null,
    });
    expect(row.resolved_at).toBeInstanceOf(Date);

    const [request] = env.gbif.matchRequests();
    expect(request!.query.get("scientificName")).toBe("Puma concolor");
    expect(request!.query.get("checklistKey")).toBe(GBIF_BACKBONE_CHECKLIST_KEY);
    expect(request!.headers["user-agent"]).toMatch(/^observing-jobs\//);
  });

  test("a synonym keeps its own key and records the accepted usage", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Felis concolor" }]);
    await performTask(env, "resolve_taxa", { taxonIds: [id] });
    expect(await findTaxon(env.db, id!)).toMatchObject({
      status: "resolved",
      gbif_usage_key: "2435104",
      gbif_accepted_usage_key: "2435099",
      accepted_name: "Puma concolor",
      usage_status: "SYNONYM",
      genus: "Puma",
    });
  });

  test("a variant spelling resolves with its match type and lower confidence", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concuolor" }]);
    await performTask(env, "resolve_taxa", { taxonIds: [id] });
    expect(await findTaxon(env.db, id!)).toMatchObject({ status: "resolved", match_type: "VARIANT", confidence: 94, gbif_usage_key: "2435099" });
  });

  test("a higher-rank match is recorded at its rank and marked for review, never as the species", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Calopteryx" }]);
    await performTask(env, "resolve_taxa", { taxonIds: [id] });
    const row = await findTaxon(env.db, id!);
    expect(row).toMatchObject({ status: "needs_review", match_type: "HIGHERRANK", rank: "GENUS", gbif_usage_key: "1427007", species: null });
    expect(row.resolution_note).toMatch(/rank GENUS/);
  });

  test("no match and an ambiguous homonym are data, not failures", async ({ env }) => {
    const [none, homonym, fakeus] = await insertTaxa(env.db, [
      { scientific_name: "Fake species" },
      { scientific_name: "Oenanthe" },
      { scientific_name: "Calopteryx fakeus" },
    ]);
    await performTask(env, "resolve_taxa", { taxonIds: [none!, homonym!, fakeus!] });
    expect(await findTaxon(env.db, none!)).toMatchObject({ status: "no_match", match_type: "NONE", gbif_usage_key: null });
    expect(await findTaxon(env.db, homonym!)).toMatchObject({
      status: "no_match",
      resolution_note: "Multiple equal matches for Oenanthe",
    });
    expect(await findTaxon(env.db, fakeus!)).toMatchObject({ status: "no_match", match_type: "NONE" });
  });

  test("the kingdom hint is sent to GBIF, and a contradicting kingdom is not a clean match", async ({ env }) => {
    const [plant, wrong] = await insertTaxa(env.db, [
      { scientific_name: "Helianthus annuus", kingdom_hint: "Plantae" },
      { scientific_name: "Puma concolor", kingdom_hint: "Plantae" },
    ]);
    await performTask(env, "resolve_taxa", { taxonIds: [plant!, wrong!] });
    expect(await findTaxon(env.db, plant!)).toMatchObject({ status: "resolved", gbif_usage_key: "9206251", kingdom: "Plantae" });
    const contradicted = await findTaxon(env.db, wrong!);
    expect(contradicted.status).toBe("needs_review");
    expect(contradicted.resolution_note).toMatch(/kingdom hint 'Plantae' contradicts GBIF's kingdom 'Animalia'/);
    expect(env.gbif.matchRequests().map((r) => r.query.get("kingdom"))).toEqual(["Plantae", "Plantae"]);
  });
});

describe("resolve_taxa under upstream failures", () => {
  for (const [label, behaviour] of [
    ["a 503", { status: 503, body: { error: "down" } }],
    ["a 429 with Retry-After", { status: 429, body: { error: "slow down" }, headers: { "retry-after": "30" } }],
    ["a dropped connection", { destroy: true as const }],
  ] as const) {
    test(`${label} fails the job for a retry and keeps the rows already recorded`, async ({ env }) => {
      const ids = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }, { scientific_name: "Felis concolor" }]);
      env.gbif.script("Felis concolor", behaviour);
      await expect(performTask(env, "resolve_taxa", { taxonIds: ids })).rejects.toThrow(/GBIF/);
      expect((await findTaxon(env.db, ids[0]!)).status).toBe("resolved");
      expect((await findTaxon(env.db, ids[1]!)).status).toBe("unresolved");

      // The retry works on what is left only. It comes after any back-off asked for: a new client,
      // since this one holds its calls back until the Retry-After has passed.
      env.gbif.reset();
      const later = { ...env, deps: { ...env.deps, upstream: { ...env.deps.upstream, gbif: makeGbifClient(env.config.gbif) } } };
      await performTask(later, "resolve_taxa", { taxonIds: ids });
      expect(env.gbif.matchRequests().map((r) => r.query.get("scientificName"))).toEqual(["Felis concolor"]);
      expect((await findTaxon(env.db, ids[1]!)).status).toBe("resolved");
    });
  }

  test("a slow answer times out as a transient failure", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    env.gbif.script("Puma concolor", { delayMs: 5_000, body: {} });
    const deps = { ...env.deps, upstream: { ...env.deps.upstream, gbif: makeGbifClient({ ...env.config.gbif, timeoutMs: 100 }) } };
    await expect(performTask({ ...env, deps }, "resolve_taxa", { taxonIds: [id] })).rejects.toThrow(/no answer within 100 ms/);
    expect((await findTaxon(env.db, id!)).status).toBe("unresolved");
  });

  test("a permanent per-row problem is recorded on the row and the job goes on", async ({ env }) => {
    const [bad, odd, good] = await insertTaxa(env.db, [
      { scientific_name: "Puma concolor" },
      { scientific_name: "Felis concolor" },
      { scientific_name: "Helianthus annuus" },
    ]);
    env.gbif.script("Puma concolor", { status: 400, body: { message: "Invalid checklistKey" } });
    env.gbif.script("Felis concolor", { body: { unexpected: true } });
    await performTask(env, "resolve_taxa", { taxonIds: [bad!, odd!, good!] });
    expect(await findTaxon(env.db, bad!)).toMatchObject({ status: "error", last_error: expect.stringMatching(/HTTP 400/) });
    expect(await findTaxon(env.db, odd!)).toMatchObject({ status: "error", last_error: expect.stringMatching(/unexpected match response/) });
    expect((await findTaxon(env.db, good!)).status).toBe("resolved");
  });

  test("GBIF calls from one process stay within the configured concurrency", async ({ env }) => {
    const names = Array.from({ length: 12 }, (_, i) => `Species number ${i}`);
    for (const name of names) env.gbif.script(name, { delayMs: 30, body: { diagnostics: { matchType: "NONE" }, synonym: false } });
    const ids = await insertTaxa(env.db, names.map((scientific_name) => ({ scientific_name })));
    await performTask(env, "resolve_taxa", { taxonIds: ids });
    expect(env.gbif.maxInFlight).toBeLessThanOrEqual(env.config.gbif.concurrency);
    expect(env.gbif.matchRequests()).toHaveLength(12);
  });
});

describe("resolve_taxa is idempotent and fans out", () => {
  test("a second run changes nothing that is settled; force re-resolves", async ({ env }) => {
    const ids = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }, { scientific_name: "Fake species" }]);
    await performTask(env, "resolve_taxa", {});
    const first = await Promise.all(ids.map((id) => findTaxon(env.db, id)));
    env.gbif.reset();

    await performTask(env, "resolve_taxa", {});
    await performTask(env, "resolve_taxa", { taxonIds: ids });
    expect(env.gbif.matchRequests()).toHaveLength(0);
    expect(await Promise.all(ids.map((id) => findTaxon(env.db, id)))).toEqual(first);

    await performTask(env, "resolve_taxa", { taxonIds: ids, force: true });
    expect(env.gbif.matchRequests()).toHaveLength(2);
  });

  test("a sweep larger than one batch fans out into keyed batch jobs that do not duplicate", async ({ env }) => {
    await insertTaxa(env.db, Array.from({ length: 25 }, () => ({ scientific_name: "Puma concolor" })));
    await performTask(env, "resolve_taxa", { limit: 10 });
    expect(env.gbif.matchRequests()).toHaveLength(0);
    const batch = (from: number, to: number) => ({
      key: expect.stringMatching(new RegExp(`^resolve_taxa:${from}-${to}:${to - from + 1}:[A-Za-z0-9_-]{22}$`)),
      payload: { taxonIds: Array.from({ length: to - from + 1 }, (_, index) => from + index), force: false, limit: 100 },
    });
    const batches = [batch(1, 10), batch(11, 20), batch(21, 25)];
    await expectEnqueuedMany(env.db, "resolve_taxa", batches);

    // The same sweep again replaces its pending batches (same keys) instead of adding more.
    await performTask(env, "resolve_taxa", { limit: 10 });
    await expectEnqueuedMany(env.db, "resolve_taxa", batches);

    await runDueJobs(env);
    expect(await listJobs(env.db)).toHaveLength(0);
    const statuses = await env.db.selectFrom("taxa").select("status").distinct().execute();
    expect(statuses).toEqual([{ status: "resolved" }]);
  });

  test("a kingdom backfill only touches that kingdom's rows", async ({ env }) => {
    const [plant, animal] = await insertTaxa(env.db, [
      { scientific_name: "Helianthus annuus", kingdom_hint: "Plantae" },
      { scientific_name: "Puma concolor", kingdom_hint: "Animalia" },
    ]);
    await performTask(env, "resolve_taxa", { kingdom: "plantae" });
    expect((await findTaxon(env.db, plant!)).status).toBe("resolved");
    expect((await findTaxon(env.db, animal!)).status).toBe("unresolved");
  });
});

describe("resolve_taxa through the queue", () => {
  test("an enqueued job resolves its rows and leaves the queue", async ({ env }) => {
    const ids = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: ids });
    expect(job).toMatchObject({ task: "resolve_taxa", maxAttempts: 8, jobKey: expect.stringMatching(new RegExp(`^resolve_taxa:${ids[0]}-${ids[0]}:1:[A-Za-z0-9_-]{22}$`)) });
    await runDueJobs(env);
    expect((await findTaxon(env.db, ids[0]!)).status).toBe("resolved");
    expect(await listJobs(env.db)).toHaveLength(0);
  });

  test("a cron-fired payload carries _cron and is accepted", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    await performTask(env, "resolve_taxa", { _cron: { ts: "2026-11-25T03:30:00Z", backfilled: false } });
    expect((await findTaxon(env.db, id!)).status).toBe("resolved");
  });

  test("an invalid payload is refused with each bad field named", async ({ env }) => {
    const attempt = performTask(env, "resolve_taxa", { taxonIds: ["42"], limit: 0, extra: 1 });
    await expect(attempt).rejects.toBeInstanceOf(InvalidPayloadError);
    await expect(attempt).rejects.toThrow(/payload\/taxonIds\/0 must be integer.*payload\/limit must be >= 1|payload has unknown property 'extra'/);
    await expect(enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [] })).rejects.toThrow(
      /payload\/taxonIds must NOT have fewer than 1 items/,
    );
    expect(await listJobs(env.db)).toHaveLength(0);
  });
});
