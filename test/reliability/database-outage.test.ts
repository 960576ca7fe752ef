/**
 * A database restart in the middle of a run, on a PostgreSQL server of this test's own: the
 * instances stay up, readiness says so while the database is away and recovers on its own, no pool
 * is wrongly declared dead afterwards, and every job still succeeds.
 */
import { sql } from "kysely";
import { expect } from "vitest";
import { makeDatabase, type DatabaseHandle } from "../../src/db/database.ts";
import { enqueueJobs } from "../../src/enqueue.ts";
import { test, waitFor } from "../helpers/env.ts";
import { findPools, killInstance, readiness, startInstance, type Instance } from "../helpers/instances.ts";
import { startOwnPostgres, type OwnPostgres } from "../helpers/own-postgres.ts";

const JOBS = 40;

test("a database restart mid-run loses no job, crashes nothing, and readiness recovers", { timeout: 120_000 }, async ({ env }) => {
  let postgres: OwnPostgres | undefined;
  let database: DatabaseHandle | undefined;
  const instances: Instance[] = [];
  try {
    postgres = await startOwnPostgres();
    database = makeDatabase(postgres.url, { maxConnections: 3, logger: env.logger });
    const { db } = database;
    for (let i = 0; i < 2; i++) instances.push(await startInstance(postgres.url, env.gbif.url));

    const names = Array.from({ length: JOBS }, (_, i) => `Outage species ${i}`);
    for (const name of names) env.gbif.script(name, { delayMs: 250, body: { diagnostics: { matchType: "NONE", issues: [], confidence: 100 }, synonym: false } });
    const taxa = await db.insertInto("taxa").values(names.map((name) => ({ scientific_name: name }))).returning("id").execute();
    const jobs = await enqueueJobs(db, env.registry, "resolve_taxa", taxa.map((taxon) => ({ taxonIds: [taxon.id], force: true })), {}, { source: "cli" });
    await waitFor(() => env.gbif.matchRequests().length >= 8, { message: "some jobs to run" });

    await postgres.stop();
    for (const instance of instances) {
      await waitFor(async () => {
        const answer = await readiness(instance);
        return answer.status === 503 && (answer.body.checks as { database: { ok: boolean } }).database.ok === false;
      }, { message: "readiness to report the database away" });
    }
    // Long enough for heartbeats, LISTEN, job fetches and completions to fail.
    await waitFor(() => instances.every((instance) => /could not write heartbeats/.test(instance.output())), { message: "heartbeats to fail" });
    await postgres.start();

    for (const instance of instances) {
      let last: unknown;
      await waitFor(async () => {
        const answer = await readiness(instance);
        last = answer.body;
        return answer.status === 200;
      }, { timeoutMs: 60_000, message: "readiness to recover" }).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}: ${JSON.stringify(last)}`);
      });
    }
    await waitFor(
      async () => {
        const { rows } = await sql<{ done: number }>`
          select count(*)::int as done from observing_jobs.job_records where id = any(${jobs.map((job) => job.id)}::bigint[]) and phase = 'succeeded'`.execute(db);
        return rows[0]!.done === JOBS;
      },
      { timeoutMs: 60_000, message: `all ${JOBS} jobs to succeed` },
    );
    expect((await sql<{ n: number }>`select count(*)::int as n from graphile_worker.jobs`.execute(db)).rows[0]!.n).toBe(0);

    for (const instance of instances) {
      expect(instance.child.exitCode).toBeNull();
      expect(instance.output()).not.toMatch(/unhandled/i);
      // Every heartbeat was old when the database came back; the sweeper waited for them to resume, so
      // no running pool was declared dead. (A pool that ended during the outage is settled by its
      // instance or, failing that, declared dead by the sweeper: either way it is not live.)
      expect(instance.output()).not.toMatch(/this worker pool was declared dead/);
      const pools = await findPools(db, instance.pid);
      expect(pools.filter((pool) => pool.status === "live").map((pool) => pool.runner).sort()).toEqual(["gbif", "main"]);
    }
  } finally {
    for (const instance of instances) await killInstance(instance);
    await database?.close();
    await postgres?.destroy();
  }
});
