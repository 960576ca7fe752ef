import { beforeEach, describe, expect } from "vitest";
import { loadCrontab } from "../../src/cron/crontab.ts";
import type { NewTaxon } from "../../src/db/tables/taxa.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { makeUpstreamClients } from "../../src/upstream/clients.ts";
import { expectEnqueuedMany } from "../helpers/enqueued.ts";
import { findTaxon, insertTaxa, listJobs, performTask, resetData, resolvedTaxon, runDueJobs, test } from "../helpers/env.ts";
import { imageStatement, itemEntity } from "../../src/demo/fake-wikidata.ts";

beforeEach<{ env: Parameters<typeof resetData>[0] }>(async ({ env }) => {
  await resetData(env);
});

const COUGAR_URL = "https://commons.wikimedia.org/wiki/Special:FilePath/Mountain_Lion_in_Glacier_National_Park.jpg?width=330";

/** A row resolve_taxa settled against the backbone with this (accepted) key. */
function resolved(key: string, overrides: Partial<NewTaxon> = {}): NewTaxon {
  return resolvedTaxon(key, { rank: "SPECIES", ...overrides });
}

describe("refresh_thumbnails records what Wikidata holds", () => {
  test("the item found by P846 gives its P18 image as a Special:FilePath URL at the configured width", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [resolved("2435099", { scientific_name: "Puma concolor" })]);
    await performTask(env, "refresh_thumbnails", { taxonIds: [id] });

    const row = await findTaxon(env.db, id!);
    expect(row).toMatchObject({
      wikidata_id: "Q35255",
      thumbnail_file: "Mountain Lion in Glacier National Park.jpg",
      thumbnail_url: COUGAR_URL,
      thumbnail_width: 330,
      thumbnail_status: "found",
      thumbnail_note: null,
    });
    expect(row.thumbnail_refreshed_at).toBeInstanceOf(Date);

    const [search, entities] = env.wikidata.requests;
    expect(Object.fromEntries(search!.query)).toEqual({
      action: "query",
      list: "search",
      srsearch: "haswbstatement:P846=2435099",
      srlimit: "2",
      maxlag: "5",
      format: "json",
    });
    expect(Object.fromEntries(entities!.query)).toMatchObject({ action: "wbgetentities", ids: "Q35255", props: "claims", maxlag: "5" });
    // Wikimedia etiquette: a descriptive agent with contact details, and gzip.
    expect(search!.headers["user-agent"]).toMatch(/^observing-jobs\/\S+ \(.*@.*\)/);
    expect(search!.headers["accept-encoding"]).toMatch(/gzip/);
  });

  test("a synonym is looked up by its accepted backbone key, where Wikidata keeps the taxon's item", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [resolved("2435104", { gbif_accepted_usage_key: "2435099", usage_status: "SYNONYM" })]);
    await performTask(env, "refresh_thumbnails", { taxonIds: [id] });
    expect(env.wikidata.searchedKeys()).toEqual(["2435099"]);
    expect((await findTaxon(env.db, id!)).thumbnail_url).toBe(COUGAR_URL);
  });

  test("no item, two items, no P18, only deprecated or 'no value' images are data, with a note", async ({ env }) => {
    env.wikidata.addItem(itemEntity("Q1001", "1001"));
    env.wikidata.addItem(itemEntity("Q1002", "1002"));
    env.wikidata.addItem(itemEntity("Q1003", "1002"));
    env.wikidata.addItem(itemEntity("Q1004", "1004", [imageStatement("Old.jpg", "deprecated")]));
    env.wikidata.addItem(itemEntity("Q1005", "1005", [imageStatement(null, "preferred"), imageStatement("Normal.jpg", "normal")]));
    const [none, ambiguous, noImage, deprecated, novalue] = await insertTaxa(env.db, [
      resolved("999"),
      resolved("1002"),
      resolved("1001"),
      resolved("1004"),
      resolved("1005"),
    ]);
    await performTask(env, "refresh_thumbnails", { taxonIds: [none!, ambiguous!, noImage!, deprecated!, novalue!] });

    const empty = { thumbnail_url: null, thumbnail_file: null, thumbnail_refreshed_at: expect.any(Date) };
    expect(await findTaxon(env.db, none!)).toMatchObject({ ...empty, wikidata_id: null, thumbnail_status: "no_item", thumbnail_note: "no Wikidata item has P846=999" });
    expect(await findTaxon(env.db, ambiguous!)).toMatchObject({
      ...empty,
      wikidata_id: null,
      thumbnail_status: "ambiguous_item",
      thumbnail_note: "more than one Wikidata item has P846=1002 (Q1002, Q1003)",
    });
    expect(await findTaxon(env.db, noImage!)).toMatchObject({ ...empty, wikidata_id: "Q1001", thumbnail_status: "no_image" });
    expect(await findTaxon(env.db, deprecated!)).toMatchObject({ ...empty, wikidata_id: "Q1004", thumbnail_status: "no_image" });
    // The preferred statement says "no image": a normal-rank one does not overrule it.
    expect(await findTaxon(env.db, novalue!)).toMatchObject({ ...empty, wikidata_id: "Q1005", thumbnail_status: "no_image" });
    // One wbgetentities call for every item of the batch.
    expect(env.wikidata.entityRequests()).toEqual([["Q1001", "Q1004", "Q1005"]]);
  });

  test("a preferred image wins over a normal one; a merged item is stored under its new id; a deleted one is no item", async ({ env }) => {
    env.wikidata.addItem(itemEntity("Q2001", "2001", [imageStatement("Normal.jpg", "normal"), imageStatement("Best picture (2020).jpg", "preferred")]));
    env.wikidata.addItem(itemEntity("Q2003", "2003", [imageStatement("Merged.png")]));
    env.wikidata.addRedirect("Q2002", "2002", "Q2003");
    env.wikidata.addStaleSearchHit("2004", "Q2004");
    const [preferred, merged, deleted] = await insertTaxa(env.db, [resolved("2001"), resolved("2002"), resolved("2004")]);
    await performTask(env, "refresh_thumbnails", { taxonIds: [preferred!, merged!, deleted!] });

    expect(await findTaxon(env.db, preferred!)).toMatchObject({
      thumbnail_file: "Best picture (2020).jpg",
      thumbnail_url: "https://commons.wikimedia.org/wiki/Special:FilePath/Best_picture_(2020).jpg?width=330",
    });
    expect(await findTaxon(env.db, merged!)).toMatchObject({ wikidata_id: "Q2003", thumbnail_file: "Merged.png", thumbnail_status: "found" });
    expect(await findTaxon(env.db, deleted!)).toMatchObject({ wikidata_id: null, thumbnail_status: "no_item", thumbnail_note: expect.stringMatching(/Q2004.*no longer exists/) });
  });

  test("only resolved backbone rows that are due are visited; force refreshes fresh ones", async ({ env }) => {
    const [due, fresh, stale, unresolved, colXr] = await insertTaxa(env.db, [
      resolved("2435099"),
      resolved("2435099", { thumbnail_refreshed_at: new Date(Date.now() - 86_400_000) }),
      resolved("2435099", { thumbnail_refreshed_at: new Date(Date.now() - 40 * 86_400_000) }),
      resolved("2435099", { status: "unresolved" }),
      resolved("C6YH2", { gbif_checklist_key: "7ddf754f-d193-4cc9-b351-99906754a03b" }),
    ]);
    await performTask(env, "refresh_thumbnails", {});
    const refreshed = async (id: number) => (await findTaxon(env.db, id)).thumbnail_status;
    expect([await refreshed(due!), await refreshed(fresh!), await refreshed(stale!), await refreshed(unresolved!), await refreshed(colXr!)]).toEqual([
      "found",
      null,
      "found",
      null,
      null,
    ]);

    env.wikidata.reset();
    await performTask(env, "refresh_thumbnails", { taxonIds: [fresh!], force: true });
    expect(await refreshed(fresh!)).toBe("found");
  });
});

describe("refresh_thumbnails under Wikidata failures", () => {
  test("maxlag with Retry-After fails the job for a retry; rows already recorded stay recorded", async ({ env }) => {
    env.wikidata.addItem(itemEntity("Q3001", "3001"));
    const ids = await insertTaxa(env.db, [resolved("999"), resolved("3001")]);
    env.wikidata.script(
      { body: { batchcomplete: "", query: { searchinfo: { totalhits: 0 }, search: [] } } },
      { body: { error: { code: "maxlag", info: "Waiting for 10.64.48.35: 6 seconds lagged." } }, headers: { "retry-after": "5" } },
    );
    const attempt = performTask(env, "refresh_thumbnails", { taxonIds: ids });
    await expect(attempt).rejects.toThrow(/Wikidata: API error maxlag.*recorded 1 of 2 rows/);
    await expect(attempt).rejects.toHaveProperty("cause.retryAfterMs", 5000);
    expect((await findTaxon(env.db, ids[0]!)).thumbnail_status).toBe("no_item");
    expect((await findTaxon(env.db, ids[1]!)).thumbnail_refreshed_at).toBeNull();

    // The retry (with fresh clients: these would still honour the Retry-After) works on what is left only.
    env.wikidata.requests.length = 0;
    env.deps.upstream = makeUpstreamClients(env.config);
    await performTask(env, "refresh_thumbnails", { taxonIds: ids });
    expect(env.wikidata.searchedKeys()).toEqual(["3001"]);
  });

  test("a permanent error is recorded on the row, keeping an earlier thumbnail, and the job goes on", async ({ env }) => {
    const [bad, good] = await insertTaxa(env.db, [
      resolved("2435099", { thumbnail_url: "https://commons.wikimedia.org/wiki/Special:FilePath/Earlier.jpg?width=330", thumbnail_status: "found" }),
      resolved("2435099"),
    ]);
    env.wikidata.script({ body: { error: { code: "badvalue", info: "Unrecognized value for parameter \"srwhat\"" } } });
    await performTask(env, "refresh_thumbnails", { taxonIds: [bad!, good!] });
    expect(await findTaxon(env.db, bad!)).toMatchObject({
      thumbnail_status: "error",
      thumbnail_note: expect.stringMatching(/API error badvalue/),
      thumbnail_url: expect.stringMatching(/Earlier\.jpg/),
      thumbnail_refreshed_at: null,
    });
    expect((await findTaxon(env.db, good!)).thumbnail_status).toBe("found");
  });

  test("requests go one at a time, also from two jobs at once", async ({ env }) => {
    const ids = await insertTaxa(env.db, Array.from({ length: 8 }, (_, i) => resolved(String(5000 + i))));
    await Promise.all([
      performTask(env, "refresh_thumbnails", { taxonIds: ids.slice(0, 4) }),
      performTask(env, "refresh_thumbnails", { taxonIds: ids.slice(4) }),
    ]);
    expect(env.wikidata.searchedKeys()).toHaveLength(8);
    expect(env.wikidata.maxInFlight).toBe(1);
  });
});

describe("refresh_thumbnails through the queue", () => {
  test("an enqueued job runs in the wikidata queue and records its rows", async ({ env }) => {
    const ids = await insertTaxa(env.db, [resolved("2435099")]);
    const job = await enqueueJob(env.db, env.registry, "refresh_thumbnails", { taxonIds: ids });
    expect(job).toMatchObject({ queueName: "wikidata", maxAttempts: 8, jobKey: expect.stringMatching(new RegExp(`^refresh_thumbnails:${ids[0]}-${ids[0]}:1:[A-Za-z0-9_-]{22}$`)) });
    await runDueJobs(env);
    expect((await findTaxon(env.db, ids[0]!)).thumbnail_status).toBe("found");
    expect(await listJobs(env.db)).toHaveLength(0);
  });

  test("a transient failure leaves the job queued for a retry with the error", async ({ env }) => {
    const ids = await insertTaxa(env.db, [resolved("2435099")]);
    env.wikidata.script({ status: 503, body: "upstream connect error", headers: { "content-type": "text/plain" } });
    await enqueueJob(env.db, env.registry, "refresh_thumbnails", { taxonIds: ids });
    await runDueJobs(env);
    const [job] = await listJobs(env.db, "refresh_thumbnails");
    expect(job).toMatchObject({ attempts: 1, queue_name: "wikidata", last_error: expect.stringMatching(/HTTP 503/) });
    expect((await findTaxon(env.db, ids[0]!)).thumbnail_refreshed_at).toBeNull();
  });

  test("a sweep larger than a batch fans out into keyed batch jobs in the wikidata queue", async ({ env }) => {
    await insertTaxa(env.db, Array.from({ length: 5 }, () => resolved("2435099")));
    await performTask(env, "refresh_thumbnails", { limit: 2 });
    expect(env.wikidata.requests).toHaveLength(0);
    // Each batch carries the sweep's options on; the batch's own defaults are filled in.
    const batch = (taxonIds: number[]) => ({ queue: "wikidata", payload: { taxonIds, limit: 2, staleAfterDays: 30, force: false } });
    const batches = await expectEnqueuedMany(env.db, "refresh_thumbnails", [batch([1, 2]), batch([3, 4]), batch([5])]);
    expect(batches.map((job) => [job.key?.replace(/:[A-Za-z0-9_-]{22}$/, ""), job.queue])).toEqual([
      ["refresh_thumbnails:1-2:2", "wikidata"],
      ["refresh_thumbnails:3-4:2", "wikidata"],
      ["refresh_thumbnails:5-5:1", "wikidata"],
    ]);
    await runDueJobs(env);
    expect(await listJobs(env.db)).toHaveLength(0);
    const statuses = await env.db.selectFrom("taxa").select("thumbnail_status").distinct().execute();
    expect(statuses).toEqual([{ thumbnail_status: "found" }]);
  });

  test("the crontab line runs in the task's queue with its attempts", async ({ env }) => {
    const task = env.registry.get("refresh_thumbnails");
    const entry = (await loadCrontab(env.config.worker.crontabFile, env.registry)).find((e) => e.item.task === "refresh_thumbnails");
    expect(entry?.item.options).toMatchObject({ queueName: task.defaults.queueName, maxAttempts: task.defaults.maxAttempts });
  });
});
