import { sql } from "kysely";
import { enqueueJob } from "../../src/enqueue.ts";
import { KNOWN_NAMES } from "../helpers/fake-gbif.ts";
import { insertTaxa, test } from "../helpers/env.ts";
import { holderOf, killInstance, startInstance } from "../helpers/instances.ts";

test("debug", { timeout: 300_000 }, async ({ env }) => {
  const [a, b] = await Promise.all([startInstance(env.database.url, env.gbif.url, { GBIF_TIMEOUT_MS: "180000" }), startInstance(env.database.url, env.gbif.url, { GBIF_TIMEOUT_MS: "180000" })]);
  try {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    env.gbif.script("Puma concolor", { delayMs: 60_000, body: KNOWN_NAMES["Puma concolor"] });
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [id!] }, {}, { source: "cli" });
    const { holder } = await holderOf(env.db, job.id, [a, b]);
    holder.kill("SIGKILL");
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 2000));
      const { rows } = await sql`select j.id, j.attempts, j.max_attempts, j.locked_by, j.locked_at, j.run_at, j.is_available, now() as now, j.task_id from graphile_worker._private_jobs j`.execute(env.db);
      const pools = await sql`select pool_id, runner, status, session_name, last_seen from observing_jobs.worker_heartbeats`.execute(env.db);
      const act = await sql`select application_name, state, left(query, 80) as q from pg_stat_activity where datname = current_database() and application_name like 'observing-jobs%'`.execute(env.db);
      console.log(JSON.stringify({ i, jobs: rows, calls: env.gbif.matchRequests().length }));
      if (i === 6) console.log(JSON.stringify({ pools: pools.rows, act: act.rows }, null, 1));
    }
  } finally {
    await killInstance(a);
    await killInstance(b);
  }
});
