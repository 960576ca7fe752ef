/**
 * The per-file test environment ("setup returns a bundle"): a cloned database, the real registry,
 * a fake GBIF, a config pointing at both, and a logger whose lines tests can read.
 * Teardown fails the file when a test left database clients checked out.
 */
import { Writable } from "node:stream";
import { runOnce, type Job } from "graphile-worker";
import { sql } from "kysely";
import { test as base } from "vitest";
import { parseConfig, type Config } from "../../src/config.ts";
import { makeDatabase, type DatabaseHandle, type Db } from "../../src/db/database.ts";
import type { NewTaxon, TaxonRow } from "../../src/db/tables/taxa.ts";
import { makeLogger, makeWorkerLogger, type Logger } from "../../src/observability/logger.ts";
import { loadRegistry, type TaskRegistry } from "../../src/registry.ts";
import type { TaskResult } from "../../src/task.ts";
import { makeUpstreamClients } from "../../src/upstream/clients.ts";
import { executeTask, type TaskDependencies } from "../../src/worker/execute.ts";
import { makeTaskList } from "../../src/worker/worker.ts";
import { loadCrontab } from "../../src/cron/crontab.ts";
import { makeQueueStats, type QueueStats } from "../../src/lifecycle/queue-stats.ts";
import { makeCronFreshness, type CronFreshness } from "../../src/cron/freshness.ts";
import { findPauses } from "../../src/db/repositories/pauses.ts";
import { ServiceMetrics } from "../../src/observability/metrics.ts";
import { createTestDatabase, type TestDatabase } from "./database.ts";
import { startFakeGbif, type FakeGbif } from "../../src/demo/fake-gbif.ts";
import { GBIF_BACKBONE_CHECKLIST_KEY } from "../../src/upstream/gbif.ts";
import { startFakeIucn, type FakeIucn } from "../../src/demo/fake-iucn.ts";
import { startFakeWikidata, type FakeWikidata } from "../../src/demo/fake-wikidata.ts";

export interface TestEnv extends DatabaseHandle {
  database: TestDatabase;
  registry: TaskRegistry;
  gbif: FakeGbif;
  wikidata: FakeWikidata;
  iucn: FakeIucn;
  config: Config;
  logger: Logger;
  /** Every log line written so far, parsed. */
  logs: Array<Record<string, unknown>>;
  deps: TaskDependencies;
  queueStats: QueueStats;
  cronFreshness: CronFreshness;
  metrics: ServiceMetrics;
}

/** CI must run every test: a check that needs a tool CI installs may only be skipped elsewhere. */
export const IN_CI = Boolean(process.env.CI);

/** Settings every test environment starts from; tests override single variables. */
export function testEnvironment(overrides: Record<string, string> = {}): Record<string, string> {
  return { NODE_ENV: "test", LOG_LEVEL: "debug", LOG_FORMAT: "json", PORT: "0", HOST: "127.0.0.1", ...overrides };
}

export async function makeTestEnv(overrides: Record<string, string> = {}): Promise<TestEnv & { close(): Promise<void> }> {
  const database = await createTestDatabase();
  const gbif = await startFakeGbif();
  const wikidata = await startFakeWikidata();
  const iucn = await startFakeIucn();
  const config = parseConfig(
    testEnvironment({
      DATABASE_URL: database.url,
      GBIF_BASE_URL: gbif.url,
      GBIF_TIMEOUT_MS: "2000",
      WIKIDATA_BASE_URL: wikidata.url,
      WIKIDATA_TIMEOUT_MS: "2000",
      IUCN_BASE_URL: iucn.url,
      IUCN_API_TOKEN: iucn.token,
      IUCN_TIMEOUT_MS: "2000",
      // Pacing has its own test; the others would only wait.
      IUCN_MIN_INTERVAL_MS: "0",
      ...overrides,
    }),
  );
  const { logger, logs } = makeCapturingLogger(config);
  const handle = makeDatabase(database.url, { maxConnections: 20, logger });
  const registry = await loadRegistry();
  const deps = { db: handle.db, registry, upstream: makeUpstreamClients(config), logger, config };
  const queueStats = makeQueueStats(handle.db, 0);
  const cronFreshness = makeCronFreshness(handle.db, await loadCrontab(config.worker.crontabFile, registry), { maxAgeMs: 0, registry });
  const metrics = new ServiceMetrics({ queueStats, cronFreshness, pauses: () => findPauses(handle.db), registry });
  return {
    ...handle,
    database,
    registry,
    gbif,
    wikidata,
    iucn,
    config,
    logger,
    logs,
    deps,
    queueStats,
    cronFreshness,
    metrics,
    async close() {
      const checkedOut = handle.pool.totalCount - handle.pool.idleCount;
      await handle.close();
      await gbif.stop();
      await wikidata.stop();
      await iucn.stop();
      await database.drop();
      if (checkedOut > 0) throw new Error(`a test left ${checkedOut} database client(s) checked out`);
    },
  };
}

export function makeCapturingLogger(config: Config): { logger: Logger; logs: Array<Record<string, unknown>> } {
  const logs: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: makeLogger(config.log, { destination }), logs };
}

/** vitest fixture: one environment per test file. */
export const test = base.extend<{ env: TestEnv }>({
  env: [
    // eslint-disable-next-line no-empty-pattern
    async ({}, use) => {
      const env = await makeTestEnv();
      await use(env);
      await env.close();
    },
    { scope: "file" },
  ],
});

/** Runs a task in-process as the queue would, payload JSON round-tripped (a Date comes back as a string); returns its result. */
export async function performTask(env: TestEnv, task: string, payload: unknown, signal = new AbortController().signal): Promise<TaskResult> {
  return executeTask(
    env.registry.get(task),
    JSON.parse(JSON.stringify(payload)),
    { id: "test", attempt: 1, maxAttempts: 1, queueName: null },
    env.deps,
    [signal],
  );
}

/**
 * As the service runs graphile-worker: completions go through its batcher, which runOnce flushes
 * before it returns. Unbatched, a completion is fire-and-forget and may land after runOnce returns.
 */
export const FLUSHING_PRESET = { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } };

/**
 * Works every job that is due now through graphile-worker (their records are written with it). runOnce stops
 * as soon as it finds no job it may take, and a named queue's next job is not takeable until the
 * previous job's release reaches the database: so go again while a job is due or locked, up to a deadline.
 */
export async function runDueJobs(env: TestEnv, registry: TaskRegistry = env.registry): Promise<void> {
  const deadline = Date.now() + 10_000;
  const taskList = makeTaskList(registry.all(), { ...env.deps, registry }, [env.metrics]);
  for (;;) {
    await runOnce({ pgPool: env.pool, taskList, logger: makeWorkerLogger(env.logger), preset: FLUSHING_PRESET });
    const { rows } = await sql<{ pending: number }>`
      select count(*)::int as pending from graphile_worker.jobs
      where locked_at is not null or (run_at <= now() and attempts < max_attempts)`.execute(env.db);
    if (rows[0]!.pending === 0) break;
    if (Date.now() > deadline) throw new Error(`runDueJobs: ${rows[0]!.pending} job(s) still due or running after 10 s`);
  }
}

/** A row of graphile-worker's public `jobs` view (which leaves payloads out). */
export type JobRow = Pick<Job, "id" | "task_identifier" | "attempts" | "max_attempts" | "key" | "last_error" | "run_at" | "locked_by"> & {
  queue_name: string | null;
};

/** The jobs in graphile-worker's public view, oldest first. */
export async function listJobs(db: Db, task?: string): Promise<JobRow[]> {
  const { rows } = await sql<JobRow>`
    select id, task_identifier, queue_name, attempts, max_attempts, key, last_error, run_at, locked_by
    from graphile_worker.jobs
    where ${task ?? null}::text is null or task_identifier = ${task ?? null}
    order by id`.execute(db);
  return rows;
}

/** Empties the tables tests write to, between tests of one file. */
export async function resetData(env: TestEnv): Promise<void> {
  await sql`truncate taxa, observing_jobs.job_records, observing_jobs.job_events, observing_jobs.job_outcome_counts, observing_jobs.cron_runs, observing_jobs.dashboard_sessions restart identity`.execute(env.db);
  const ids = (await listJobs(env.db)).map((job) => job.id);
  if (ids.length > 0) await sql`select graphile_worker.complete_jobs(${ids}::bigint[])`.execute(env.db);
  env.gbif.reset();
  env.wikidata.reset();
  env.iucn.reset();
  // Fresh clients: a Retry-After one test provoked must not hold back the next test's calls.
  env.deps.upstream = makeUpstreamClients(env.config);
  env.logs.length = 0;
}

/** A row resolve_taxa settled against the GBIF backbone, with this key as its usage and accepted usage. */
export function resolvedTaxon(key: string, overrides: Partial<NewTaxon> = {}): NewTaxon {
  return {
    scientific_name: `Taxon ${key}`,
    status: "resolved",
    gbif_usage_key: key,
    gbif_accepted_usage_key: key,
    gbif_checklist_key: GBIF_BACKBONE_CHECKLIST_KEY,
    ...overrides,
  };
}

export async function insertTaxa(db: Db, taxa: NewTaxon[]): Promise<number[]> {
  const rows = await db.insertInto("taxa").values(taxa).returning("id").execute();
  return rows.map((row) => row.id);
}

export async function findTaxon(db: Db, id: number): Promise<TaxonRow> {
  return db.selectFrom("taxa").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
}

/** Polls until `check` returns a value other than undefined/false, or fails after the deadline. */
export async function waitFor<T>(check: () => Promise<T | undefined | false> | T | undefined | false, options: { timeoutMs?: number; message?: string } = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let interval = 10;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${options.message ?? "condition"}`);
    await new Promise((resolve) => setTimeout(resolve, interval));
    interval = Math.min(interval * 2, 200);
  }
}
