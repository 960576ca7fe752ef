import { beforeEach, describe, expect } from "vitest";
import { loadCrontab } from "../../src/cron/crontab.ts";
import type { NewTaxon } from "../../src/db/tables/taxa.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { makeUpstreamClients } from "../../src/upstream/clients.ts";
import { findTaxon, insertTaxa, listJobs, performTask, resetData, resolvedTaxon, runDueJobs, test, type TestEnv } from "../helpers/env.ts";
import { assessmentSummary, IUCN_REGIONS } from "../../src/demo/fake-iucn.ts";

beforeEach<{ env: TestEnv }>(async ({ env }) => {
  await resetData(env);
});

function species(name: string, overrides: Partial<NewTaxon> = {}): NewTaxon {
  return resolvedTaxon("1", { scientific_name: name, accepted_name: name, rank: "SPECIES", ...overrides });
}

/** The same environment with other settings (and fresh clients built from them). */
function withSettings(env: TestEnv, settings: Partial<TestEnv["config"]["iucn"]>): TestEnv {
  const config = { ...env.config, iucn: { ...env.config.iucn, ...settings } };
  return { ...env, config, deps: { ...env.deps, upstream: makeUpstreamClients(config) } };
}

describe("sync_conservation_status records the latest global assessment", () => {
  test("category, year and assessment id of the latest global assessment; the token goes in Authorization", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [species("Puma concolor")]);
    await performTask(env, "sync_conservation_status", { taxonIds: [id] });
    const row = await findTaxon(env.db, id!);
    expect(row).toMatchObject({ iucn_status: "assessed", iucn_category: "LC", iucn_assessment_year: 2015, iucn_assessment_id: "50663430", iucn_note: null });
    expect(row.iucn_synced_at).toBeInstanceOf(Date);
    const [request] = env.iucn.requests;
    expect(request!.path).toBe("/api/v4/taxa/scientific_name");
    expect(Object.fromEntries(request!.query)).toEqual({ genus_name: "Puma", species_name: "concolor" });
    expect(request!.headers.authorization).toBe(env.iucn.token);
  });

  test("a regional assessment is ignored even when it is latest; an old global one is not latest", async ({ env }) => {
    const { GLOBAL, EUROPE } = IUCN_REGIONS;
    env.iucn.addSpecies("Canis lupus", [
      assessmentSummary({ id: 3, year: 2023, latest: true, code: "VU", scopes: [EUROPE] }),
      assessmentSummary({ id: 2, year: 2018, latest: true, code: "LC", scopes: [GLOBAL] }),
      assessmentSummary({ id: 1, year: 2010, latest: false, code: "EN", scopes: [GLOBAL] }),
    ]);
    env.iucn.addSpecies("Lynx pardinus", [assessmentSummary({ id: 4, year: 2024, latest: true, code: "EN", scopes: [EUROPE] })]);
    const [wolf, lynx] = await insertTaxa(env.db, [species("Canis lupus"), species("Lynx pardinus")]);
    await performTask(env, "sync_conservation_status", { taxonIds: [wolf!, lynx!] });
    expect(await findTaxon(env.db, wolf!)).toMatchObject({ iucn_category: "LC", iucn_assessment_year: 2018, iucn_assessment_id: "2" });
    expect(await findTaxon(env.db, lynx!)).toMatchObject({
      iucn_status: "no_global_assessment",
      iucn_category: null,
      iucn_note: expect.stringMatching(/no latest global assessment/),
      iucn_synced_at: expect.any(Date),
    });
  });

  test("a 2024-shaped summary without the category code falls back to GET /assessment/{id}", async ({ env }) => {
    env.iucn.addSpecies("Gorilla gorilla", [assessmentSummary({ id: 17963950, year: 2018, latest: true })]);
    env.iucn.addAssessment(17963950, "CR", 2018);
    const [id] = await insertTaxa(env.db, [species("Gorilla gorilla")]);
    await performTask(env, "sync_conservation_status", { taxonIds: [id] });
    expect(await findTaxon(env.db, id!)).toMatchObject({ iucn_status: "assessed", iucn_category: "CR", iucn_assessment_id: "17963950" });
    expect(env.iucn.requests.map((r) => r.path)).toEqual(["/api/v4/taxa/scientific_name", "/api/v4/assessment/17963950"]);
  });

  test("an unknown name (404) is data: not found", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [species("Loxodonta africanum")]);
    await performTask(env, "sync_conservation_status", { taxonIds: [id] });
    expect(await findTaxon(env.db, id!)).toMatchObject({ iucn_status: "not_found", iucn_note: "IUCN does not know 'Loxodonta africanum'", iucn_synced_at: expect.any(Date) });
  });

  test("only resolved species are asked for, by their accepted name; a synced row waits until it is stale", async ({ env }) => {
    const [synonym, genus, unresolved, fresh] = await insertTaxa(env.db, [
      species("Felis concolor", { accepted_name: "Puma concolor" }),
      species("Puma", { rank: "GENUS" }),
      species("Puma concolor", { status: "unresolved" }),
      species("Puma concolor", { iucn_synced_at: new Date() }),
    ]);
    await performTask(env, "sync_conservation_status", {});
    expect(env.iucn.askedNames()).toEqual(["Puma concolor"]);
    expect((await findTaxon(env.db, synonym!)).iucn_category).toBe("LC");
    for (const id of [genus!, unresolved!, fresh!]) expect((await findTaxon(env.db, id)).iucn_status).toBeNull();
  });

  test("a name that is not a binomial is recorded as a per-row error without a call", async ({ env }) => {
    const [odd, good] = await insertTaxa(env.db, [species("Puma concolor couguar"), species("Puma concolor")]);
    await performTask(env, "sync_conservation_status", { taxonIds: [odd!, good!] });
    expect(await findTaxon(env.db, odd!)).toMatchObject({ iucn_status: "error", iucn_note: expect.stringMatching(/not a binomial/), iucn_synced_at: null });
    expect(env.iucn.askedNames()).toEqual(["Puma concolor"]);
  });
});

describe("sync_conservation_status and the token", () => {
  test("without IUCN_API_TOKEN the job fails with a configuration error and calls nothing", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [species("Puma concolor")]);
    await expect(performTask(withSettings(env, { token: undefined }), "sync_conservation_status", { taxonIds: [id] })).rejects.toThrow(
      /IUCN_API_TOKEN is not set.*no call was made/,
    );
    expect(env.iucn.requests).toHaveLength(0);
    expect((await findTaxon(env.db, id!)).iucn_status).toBeNull();
  });

  test("a token IUCN refuses (401) fails the job at the first call, records nothing, and never shows the token", async ({ env }) => {
    const secret = "revoked-token-6f1e";
    const ids = await insertTaxa(env.db, [species("Puma concolor"), species("Canis lupus")]);
    const attempt = performTask(withSettings(env, { token: secret }), "sync_conservation_status", { taxonIds: ids });
    await expect(attempt).rejects.toThrow(/IUCN refused the API token \(HTTP 401\): check IUCN_API_TOKEN/);
    expect(env.iucn.requests).toHaveLength(1);
    expect(env.iucn.requests[0]!.headers.authorization).toBe(secret);
    for (const id of ids) expect((await findTaxon(env.db, id)).iucn_status).toBeNull();
    const error = await attempt.catch((e: unknown) => e);
    expect(JSON.stringify([String(error), (error as Error).stack, env.logs])).not.toContain(secret);
  });
});

describe("sync_conservation_status under IUCN failures", () => {
  test("a 429 with Retry-After fails the job for a retry, rows done stay done, and later calls wait it out", async ({ env }) => {
    const ids = await insertTaxa(env.db, [species("Puma concolor"), species("Canis lupus"), species("Lynx lynx")]);
    env.iucn.script("Canis lupus", { status: 429, body: { error: "Too Many Requests" }, headers: { "retry-after": "60" } });
    const attempt = performTask(env, "sync_conservation_status", { taxonIds: ids });
    await expect(attempt).rejects.toThrow(/IUCN: HTTP 429.*recorded 1 of 3 rows/);
    await expect(attempt).rejects.toHaveProperty("cause.retryAfterMs", 60_000);
    expect((await findTaxon(env.db, ids[0]!)).iucn_status).toBe("assessed");
    expect((await findTaxon(env.db, ids[1]!)).iucn_synced_at).toBeNull();
    expect(env.iucn.requests).toHaveLength(2);

    // Within the Retry-After, this process does not knock again: the attempt fails at once.
    await expect(performTask(env, "sync_conservation_status", { taxonIds: ids })).rejects.toThrow(/asked to wait until/);
    expect(env.iucn.requests).toHaveLength(2);
  });

  test("calls from this process go one at a time, IUCN_MIN_INTERVAL_MS apart", async ({ env }) => {
    const [warmUp, ...ids] = await insertTaxa(env.db, Array.from({ length: 5 }, () => species("Puma concolor")));
    const paced = withSettings(env, { minIntervalMs: 40 });
    // The first call of a process loads Node's fetch and opens the connection, which can delay its
    // arrival by tens of milliseconds on a busy machine (the next one then seems to come early):
    // one call first, not counted.
    await performTask(paced, "sync_conservation_status", { taxonIds: [warmUp!] });
    env.iucn.requests.length = 0;
    await Promise.all([
      performTask(paced, "sync_conservation_status", { taxonIds: ids.slice(0, 2) }),
      performTask(paced, "sync_conservation_status", { taxonIds: ids.slice(2) }),
    ]);
    const starts = env.iucn.requests.map((r) => r.at);
    expect(starts).toHaveLength(4);
    // The client spaces its sends 40 ms apart; the fake sees arrivals, which the loopback's delivery
    // can bring a few ms closer on a busy machine. Without pacing they would be a millisecond or two apart.
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(30);
    expect(starts.at(-1)! - starts[0]!).toBeGreaterThanOrEqual(3 * 40 - 10);
    expect(env.iucn.maxInFlight).toBe(1);
  });

  test("an answer of the wrong shape is a per-row error; the job goes on", async ({ env }) => {
    const [odd, good] = await insertTaxa(env.db, [species("Canis lupus", { iucn_category: "LC" }), species("Puma concolor")]);
    env.iucn.script("Canis lupus", { body: { taxon: {}, assessments: "none" } });
    await performTask(env, "sync_conservation_status", { taxonIds: [odd!, good!] });
    expect(await findTaxon(env.db, odd!)).toMatchObject({ iucn_status: "error", iucn_category: "LC", iucn_note: expect.stringMatching(/unexpected taxa\/scientific_name response/) });
    expect((await findTaxon(env.db, good!)).iucn_status).toBe("assessed");
  });
});

describe("sync_conservation_status through the queue", () => {
  test("an enqueued job runs in the iucn queue and records its rows", async ({ env }) => {
    const ids = await insertTaxa(env.db, [species("Puma concolor")]);
    const job = await enqueueJob(env.db, env.registry, "sync_conservation_status", { taxonIds: ids });
    expect(job).toMatchObject({ queueName: "iucn", maxAttempts: 8 });
    await runDueJobs(env);
    expect((await findTaxon(env.db, ids[0]!)).iucn_category).toBe("LC");
    expect(await listJobs(env.db)).toHaveLength(0);
  });

  test("a 503 leaves the job queued for a retry with the error", async ({ env }) => {
    const ids = await insertTaxa(env.db, [species("Puma concolor")]);
    env.iucn.script("Puma concolor", { status: 503, body: { error: "Service Unavailable" } });
    await enqueueJob(env.db, env.registry, "sync_conservation_status", { taxonIds: ids });
    await runDueJobs(env);
    expect((await listJobs(env.db, "sync_conservation_status"))[0]).toMatchObject({ attempts: 1, last_error: expect.stringMatching(/IUCN: HTTP 503/) });
    expect((await findTaxon(env.db, ids[0]!)).iucn_synced_at).toBeNull();
  });

  test("the crontab line runs in the task's queue with its attempts", async ({ env }) => {
    const task = env.registry.get("sync_conservation_status");
    const entry = (await loadCrontab(env.config.worker.crontabFile, env.registry)).find((e) => e.item.task === "sync_conservation_status");
    expect(entry?.item.options).toMatchObject({ queueName: task.defaults.queueName, maxAttempts: task.defaults.maxAttempts });
  });
});
