/**
 * What an attempt's failure does to its job, through the queue (graphile-worker's runOnce and the
 * service's task wrapper), against the fake upstreams:
 * - Retry-After (429 or 503, and Wikidata's maxlag) defers the job until then with its attempt
 *   given back, for every upstream; before, GBIF's `429 Retry-After: 120` was retried 2.8 s later
 *   and the IUCN and Wikidata clients failed each attempt at once, burning the job's attempts;
 * - a failure no retry can fix (no IUCN_API_TOKEN, a token IUCN refuses, a payload the schema
 *   refuses) kills the job at once with its reason; before, it was retried up to 8 times;
 * - anything else keeps graphile-worker's retry with backoff.
 */
import { sql } from "kysely";
import { describe, expect } from "vitest";
import { GBIF_BACKBONE_CHECKLIST_KEY } from "../../src/upstream/gbif.ts";
import type { NewTaxon } from "../../src/db/tables/taxa.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { makeUpstreamClients } from "../../src/upstream/clients.ts";
import { MAX_DEFERRAL_MS } from "../../src/worker/outcomes.ts";
import { insertTaxa, listJobs, resetData, runDueJobs, test, type TestEnv } from "../helpers/env.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

function resolvedSpecies(name: string): NewTaxon {
  return { scientific_name: name, accepted_name: name, status: "resolved", rank: "SPECIES", gbif_usage_key: "5219426", gbif_accepted_usage_key: "5219426", gbif_checklist_key: GBIF_BACKBONE_CHECKLIST_KEY };
}

/** Seconds from now until `date`. */
const secondsUntil = (date: Date) => (date.getTime() - Date.now()) / 1000;

async function timelineOf(env: TestEnv, id: string): Promise<Array<[string, number | null]>> {
  return (await findJob(env.db, id))!.timeline.map((event) => [event.event, event.attempt]);
}

describe("an upstream that asks to wait", () => {
  test("GBIF's 429 Retry-After: 120 defers the job 120 s with its attempt given back, and holds back this process's other GBIF calls", async ({ env }) => {
    const [puma, lynx] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }, { scientific_name: "Lynx lynx" }]);
    env.gbif.script("Puma concolor", { status: 429, body: { message: "Too many requests" }, headers: { "retry-after": "120" } });
    const first = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [puma!] });
    await runDueJobs(env);
    const [job] = await listJobs(env.db, "resolve_taxa");
    expect(job).toMatchObject({ id: first.id, attempts: 0, locked_by: null, last_error: expect.stringMatching(/^deferred until .*: GBIF: HTTP 429 from \/v2\/species\/match \(Retry-After 120 s\)/) });
    expect(secondsUntil(job!.run_at)).toBeGreaterThan(110);
    expect(secondsUntil(job!.run_at)).toBeLessThanOrEqual(121);
    expect(await timelineOf(env, first.id)).toEqual([["enqueued", 0], ["started", 1], ["deferred", 1]]);
    expect((await findJob(env.db, first.id))!.timeline[2]!.run_at!.getTime()).toBe(job!.run_at.getTime());
    // Not the job's failure: the dashboard's failure counts leave it out.
    expect(await failedAttemptsCounted(env)).toBe(0);

    // Another job meanwhile: GBIF is not called again; that job waits out the rest of the back-off.
    const second = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [lynx!] });
    await runDueJobs(env);
    expect(env.gbif.matchRequests()).toHaveLength(1);
    const waiting = (await listJobs(env.db, "resolve_taxa")).find((row) => row.id === second.id)!;
    expect(waiting).toMatchObject({ attempts: 0, last_error: expect.stringMatching(/asked to wait until .*not called/) });
    expect(secondsUntil(waiting.run_at)).toBeGreaterThan(100);
  });

  test("IUCN's 429 on a job's last attempt defers it however long: the job does not die of a back-off", async ({ env }) => {
    const ids = await insertTaxa(env.db, [resolvedSpecies("Puma concolor")]);
    env.iucn.script("Puma concolor", { status: 429, body: { error: "Too Many Requests" }, headers: { "retry-after": String(7 * 86_400) } });
    const { id } = await enqueueJob(env.db, env.registry, "sync_conservation_status", { taxonIds: ids }, { maxAttempts: 1 });
    await runDueJobs(env);
    const [job] = await listJobs(env.db, "sync_conservation_status");
    expect(job).toMatchObject({ id, attempts: 0, max_attempts: 1, last_error: expect.stringMatching(/deferred until .*IUCN: HTTP 429/) });
    // A Retry-After of a week is held to the longest deferral (a day); the next answer can ask again.
    expect(secondsUntil(job!.run_at)).toBeGreaterThan(MAX_DEFERRAL_MS / 1000 - 10);
    expect((await findJob(env.db, id))!.state).toBe("scheduled"); // not dead, and no attempt spent
  });

  test("Wikidata's maxlag with Retry-After defers the job; a 503 with Retry-After too", async ({ env }) => {
    const ids = await insertTaxa(env.db, [{ ...resolvedSpecies("Puma concolor"), gbif_usage_key: "2435099", gbif_accepted_usage_key: "2435099" }]);
    env.wikidata.script({ body: { error: { code: "maxlag", info: "Waiting for a database server: 6 seconds lagged" } }, headers: { "retry-after": "30" } });
    const { id } = await enqueueJob(env.db, env.registry, "refresh_thumbnails", { taxonIds: ids });
    await runDueJobs(env);
    expect((await listJobs(env.db, "refresh_thumbnails"))[0]).toMatchObject({ id, attempts: 0, last_error: expect.stringMatching(/deferred until .*maxlag/) });

    const [puma] = await insertTaxa(env.db, [{ scientific_name: "Felis catus" }]);
    env.deps.upstream = makeUpstreamClients(env.config);
    env.gbif.script("Felis catus", { status: 503, body: { message: "maintenance" }, headers: { "retry-after": "60" } });
    const resolve = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [puma!] });
    await runDueJobs(env);
    expect((await listJobs(env.db, "resolve_taxa"))[0]).toMatchObject({ id: resolve.id, attempts: 0, last_error: expect.stringMatching(/HTTP 503 .*Retry-After 60 s/) });
  });

  test("a 503 without Retry-After is an ordinary failure: the attempt counts and graphile-worker's backoff applies", async ({ env }) => {
    const [puma] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    env.gbif.script("Puma concolor", { status: 503, body: { message: "unavailable" } });
    const { id } = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [puma!] });
    await runDueJobs(env);
    const [job] = await listJobs(env.db, "resolve_taxa");
    expect(job).toMatchObject({ id, attempts: 1, last_error: expect.stringMatching(/^GBIF: HTTP 503/) });
    expect(secondsUntil(job!.run_at)).toBeLessThan(5);
    expect(await timelineOf(env, id)).toEqual([["enqueued", 0], ["started", 1], ["failed", 1]]);
    expect(await failedAttemptsCounted(env)).toBe(1);
  });
});

/** Failed attempts in the per-minute outcome counters (the dashboard's chart and failure rate). */
async function failedAttemptsCounted(env: TestEnv): Promise<number> {
  const { rows } = await sql<{ failed: number }>`select coalesce(sum(failed), 0)::int as failed from observing_jobs.job_outcome_counts`.execute(env.db);
  return rows[0]!.failed;
}

describe("a failure no retry can fix", () => {
  test("sync_conservation_status without IUCN_API_TOKEN dies at its first attempt with the reason, its other attempts unspent", async ({ env }) => {
    const ids = await insertTaxa(env.db, [resolvedSpecies("Puma concolor")]);
    env.deps.upstream = makeUpstreamClients({ ...env.config, iucn: { ...env.config.iucn, token: undefined } });
    const { id } = await enqueueJob(env.db, env.registry, "sync_conservation_status", { taxonIds: ids });
    await runDueJobs(env);
    const [job] = await listJobs(env.db, "sync_conservation_status");
    expect(job).toMatchObject({ id, attempts: 1, max_attempts: 1, last_error: expect.stringMatching(/IUCN_API_TOKEN is not set/) });
    const details = (await findJob(env.db, id))!;
    expect(details.state).toBe("dead");
    expect(details.timeline.map((event) => event.event)).toEqual(["enqueued", "started", "failed", "exhausted"]);
    expect(env.iucn.requests).toHaveLength(0);
    expect(env.logs.some((line) => line.message === "job failed permanently: no retry can succeed; its remaining attempts are not spent")).toBe(true);
  });

  test("a token IUCN refuses (401) is permanent too", async ({ env }) => {
    const ids = await insertTaxa(env.db, [resolvedSpecies("Puma concolor")]);
    env.deps.upstream = makeUpstreamClients({ ...env.config, iucn: { ...env.config.iucn, token: "revoked-token-6f1e" } });
    const { id } = await enqueueJob(env.db, env.registry, "sync_conservation_status", { taxonIds: ids });
    await runDueJobs(env);
    expect((await listJobs(env.db, "sync_conservation_status"))[0]).toMatchObject({ id, attempts: 1, max_attempts: 1, last_error: expect.stringMatching(/IUCN refused the API token \(HTTP 401\)/) });
    expect(env.iucn.requests).toHaveLength(1);
  });

  test("a payload the task's schema refuses (added by plain SQL) is permanent", async ({ env }) => {
    const { rows } = await sql<{ id: string }>`select id from graphile_worker.add_job('resolve_taxa', '{"taxonIds":"42"}'::json, max_attempts => 8)`.execute(env.db);
    await runDueJobs(env);
    expect((await listJobs(env.db, "resolve_taxa"))[0]).toMatchObject({ id: rows[0]!.id, attempts: 1, max_attempts: 1, last_error: expect.stringMatching(/taxonIds/) });
  });
});
