/**
 * The least-privilege roles, proved by logging in as each one (real LOGIN roles with passwords)
 * against a test database: what each may do, and what PostgreSQL refuses. Roles are cluster-wide,
 * so every run uses its own names and drops them afterwards.
 */
import { randomBytes } from "node:crypto";
import { runOnce } from "graphile-worker";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { checkCrontab } from "../../src/cron/crontab.ts";
import { makeDatabase, type DatabaseHandle } from "../../src/db/database.ts";
import { EXPECTED_SCHEMA_VERSION, findSchemaVersion, migrateDatabase } from "../../src/db/migrate.ts";
import { findExcessPrivileges, warnAboutExcessPrivileges } from "../../src/db/privileges.ts";
import { recordInternalTasks } from "../../src/db/internal-tasks.ts";
import { JOB_SCHEMAS, setupRoles, type RoleSetupResult } from "../../src/db/roles.ts";
import { runCli } from "../../src/cli.ts";
import { parseConfig } from "../../src/config.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { makeWorkerLogger } from "../../src/observability/logger.ts";
import type { TaskDependencies } from "../../src/worker/execute.ts";
import { makeTaskList, startWorker } from "../../src/worker/worker.ts";
import { expectEnqueued } from "../helpers/enqueued.ts";
import { FLUSHING_PRESET, findTaxon, insertTaxa, listJobs, makeCapturingLogger, makeTestEnv, testEnvironment, waitFor, type TestEnv } from "../helpers/env.ts";

const suffix = randomBytes(4).toString("hex");
const names = {
  migrator: `oj_test_migrator_${suffix}`,
  runtime: `oj_test_runtime_${suffix}`,
  enqueuer: `oj_test_enqueuer_${suffix}`,
  /** Not created beforehand: setup-roles creates it. */
  lateEnqueuer: `oj_test_late_enqueuer_${suffix}`,
  /** Some other service's role, with a write grant from before. */
  other: `oj_test_other_${suffix}`,
};
const loginRoles = [names.migrator, names.runtime, names.enqueuer, names.other];
const password = randomBytes(18).toString("base64url");
const roles = { migrator: names.migrator, runtime: names.runtime, enqueuers: [names.enqueuer, names.lateEnqueuer] };

let env: TestEnv & { close(): Promise<void> };
let firstSetup: RoleSetupResult;
let secondSetup: RoleSetupResult;
const as: Record<"migrator" | "runtime" | "enqueuer" | "other", DatabaseHandle> = {} as never;

function urlFor(role: string): string {
  const url = new URL(env.database.url);
  url.username = role;
  url.password = password;
  return url.toString();
}

async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: inject("adminDatabaseUrl") });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  env = await makeTestEnv();
  for (const role of loginRoles) await adminQuery(`create role ${role} login password '${password}'`);
  // A grant from before the job schemas had owners: setup-roles must take it away again.
  await env.pool.query(`grant insert, update, delete on all tables in schema graphile_worker to ${names.other}`);
  await env.pool.query(`grant connect on database ${env.database.name} to ${names.other}`);

  firstSetup = await setupRoles(env.pool, roles);
  secondSetup = await setupRoles(env.pool, roles);

  for (const key of ["migrator", "runtime", "enqueuer", "other"] as const) {
    as[key] = makeDatabase(urlFor(names[key]), { maxConnections: 4, logger: env.logger });
  }
});

afterAll(async () => {
  for (const handle of Object.values(as)) await handle.close();
  await env?.close();
  for (const role of [...loginRoles, names.lateEnqueuer]) await adminQuery(`drop role if exists ${role}`);
});

const refused = { code: "42501" }; // insufficient_privilege
const ownerOnly = /must be owner|permission denied/;

describe("setup-roles", () => {
  test("creates missing roles without LOGIN, and changes nothing when run again", async () => {
    expect(firstSetup.created).toEqual([names.lateEnqueuer]);
    expect(secondSetup.created).toEqual([]);
    const { rows } = await env.pool.query("select rolcanlogin from pg_roles where rolname = $1", [names.lateEnqueuer]);
    expect(rows[0].rolcanlogin).toBe(false);
  });

  test("is the CLI's setup-roles command, and prints what it did", async () => {
    let stdout = "";
    const code = await runCli(
      ["setup-roles", "--migrator", names.migrator, "--runtime", names.runtime, "--enqueuers", roles.enqueuers.join(",")],
      { stdout: (text) => (stdout += text), stderr: () => {}, loadConfig: () => env.config },
    );
    expect(code).toBe(0);
    // taxa is the app's (here the admin's): altering it stays with its owner, and the note says so.
    expect(JSON.parse(stdout)).toEqual({ roles, created: [], notes: [expect.stringMatching(new RegExp(`^taxa belongs to \\w+: .*grant .* to "${names.migrator}"`))] });
  });

  test("hands the job schemas and everything in them to the migrator", async () => {
    const { rows } = await env.pool.query(
      `select n.nspname, pg_get_userbyid(n.nspowner) as owner,
              (select count(*) from pg_class c where c.relnamespace = n.oid and pg_get_userbyid(c.relowner) <> $2)::int as foreign_relations,
              (select count(*) from pg_proc p where p.pronamespace = n.oid and pg_get_userbyid(p.proowner) <> $2)::int as foreign_functions
         from pg_namespace n where n.nspname = any($1) order by 1`,
      [JOB_SCHEMAS, names.migrator],
    );
    expect(rows).toEqual(
      [...JOB_SCHEMAS].sort().map((schema) => ({ nspname: schema, owner: names.migrator, foreign_relations: 0, foreign_functions: 0 })),
    );
  });
});

describe("the migrator", () => {
  test("runs the migrations and may change the job schemas", async () => {
    await migrateDatabase(as.migrator.pool, as.migrator.db, env.logger);
    const client = await as.migrator.pool.connect();
    try {
      await client.query("begin");
      await client.query("create table graphile_worker.migrator_probe (id int)");
      await client.query("alter table observing_jobs.kysely_migration add column migrator_probe int");
    } finally {
      await client.query("rollback");
      client.release();
    }
  });
});

describe("the runtime role", () => {
  const deps = (): TaskDependencies => ({ ...env.deps, db: as.runtime.db });

  test("enqueues and runs a job to completion through graphile-worker", async () => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    await enqueueJob(as.runtime.db, env.registry, "resolve_taxa", { taxonIds: [id] });
    await runOnce({
      pgPool: as.runtime.pool,
      taskList: makeTaskList(env.registry.all(), deps(), []),
      logger: makeWorkerLogger(env.logger),
      preset: FLUSHING_PRESET,
    });
    // The record is ended by graphile-worker's own completion, run as the runtime role: no event rows.
    const record = await env.db.selectFrom("observing_jobs.job_records").selectAll().executeTakeFirstOrThrow();
    expect(record).toMatchObject({ phase: "succeeded", attempts: 1 });
    expect(record.finished_at).toBeInstanceOf(Date);
    expect(await env.db.selectFrom("observing_jobs.job_events").select("event").execute()).toEqual([]);
    expect(await findTaxon(env.db, id!)).toMatchObject({ status: "resolved", gbif_usage_key: "2435099" });
    expect(await listJobs(env.db, "resolve_taxa")).toEqual([]);
  });

  test("runs the runner with the crontab, and reads the schema version for /readyz", async () => {
    const crontab = checkCrontab("0 4 * * * resolve_taxa ?id=roles_probe", env.registry);
    const worker = await startWorker({
      pool: as.runtime.pool,
      deps: deps(),
      observers: [],
      cronItems: crontab.map((entry) => entry.item),
      concurrency: 1,
      pollIntervalMs: 100,
    });
    try {
      // The cron scheduler records each schedule it knows as soon as it starts.
      await waitFor(async () => {
        const { rowCount } = await env.pool.query("select 1 from graphile_worker._private_known_crontabs where identifier = 'roles_probe'");
        return rowCount === 1;
      }, { message: "the runner to register the crontab as the runtime role" });
      expect(worker.isRunning()).toBe(true);
    } finally {
      await worker.stop();
    }
    expect(await findSchemaVersion(as.runtime.pool)).toBe(EXPECTED_SCHEMA_VERSION);
  });

  test("may not change any schema, nor the app's own columns of taxa", async () => {
    const pool = as.runtime.pool;
    await expect(pool.query("create table graphile_worker.runtime_probe (id int)")).rejects.toMatchObject(refused);
    await expect(pool.query("create table observing_jobs.runtime_probe (id int)")).rejects.toMatchObject(refused);
    await expect(pool.query("create schema runtime_probe")).rejects.toMatchObject(refused);
    await expect(pool.query("alter table graphile_worker._private_jobs add column probe int")).rejects.toThrow(ownerOnly);
    await expect(pool.query("drop table observing_jobs.kysely_migration")).rejects.toThrow(ownerOnly);
    await expect(pool.query("delete from observing_jobs.kysely_migration")).rejects.toMatchObject(refused);
    await expect(pool.query("update taxa set scientific_name = 'Felis catus'")).rejects.toMatchObject(refused);
    await expect(pool.query("insert into taxa (scientific_name) values ('Felis catus')")).rejects.toMatchObject(refused);
  });
});

describe("an enqueue-only role", () => {
  test("may call add_job and add_jobs", async () => {
    const pool = as.enqueuer.pool;
    const { rows } = await pool.query<{ id: string }>(
      `select id from graphile_worker.add_job('resolve_taxa', '{"taxonIds":[7]}'::json, job_key := 'enqueuer_probe')`,
    );
    expect(rows).toHaveLength(1);
    await pool.query(
      `select id from graphile_worker.add_jobs(array[('resolve_taxa', '{"taxonIds":[8]}'::json, null, null, null, 'enqueuer_probe_2', null, null)::graphile_worker.job_spec])`,
    );
    const keys = (await listJobs(env.db, "resolve_taxa")).map((job) => job.key);
    expect(keys).toEqual(expect.arrayContaining(["enqueuer_probe", "enqueuer_probe_2"]));
  });

  test("may not add internal tasks: the database refuses them, whichever function is called", async () => {
    const pool = as.enqueuer.pool;
    const internal = /task prune_job_history is internal: it runs from the crontab or the service itself/;
    await expect(pool.query(`select graphile_worker.add_job('prune_job_history', '{"succeededDays":0}'::json)`)).rejects.toMatchObject({ ...refused, message: expect.stringMatching(internal) });
    await expect(
      pool.query(`select id from graphile_worker.add_jobs(array[('prune_job_history', '{"succeededDays":0}'::json, null, null, null, 'enqueuer_prune', null, null)::graphile_worker.job_spec])`),
    ).rejects.toMatchObject({ ...refused, message: expect.stringMatching(internal) });
    expect(await listJobs(env.db, "prune_job_history")).toEqual([]);
    // The runtime (its cron, the service) adds them as before.
    await as.runtime.pool.query(`select graphile_worker.add_job('prune_job_history', '{}'::json, job_key := 'runtime_prune')`);
    await expectEnqueued(env.db, "prune_job_history", { key: "runtime_prune" });
  });

  test("the list of internal tasks follows the task files, written by the runtime at start-up", async () => {
    await recordInternalTasks(as.runtime.db, env.registry);
    const { rows } = await env.pool.query<{ identifier: string }>("select identifier from observing_jobs.internal_tasks order by 1");
    expect(rows.map((row) => row.identifier)).toEqual(env.registry.all().filter((task) => task.internal).map((task) => task.name).sort());
  });

  test("may not read, change or complete jobs, use the service schema, or touch taxa", async () => {
    const pool = as.enqueuer.pool;
    await expect(pool.query("select * from graphile_worker._private_jobs")).rejects.toMatchObject(refused);
    await expect(pool.query("select * from graphile_worker.jobs")).rejects.toMatchObject(refused);
    await expect(pool.query("delete from graphile_worker._private_jobs")).rejects.toMatchObject(refused);
    await expect(pool.query("select graphile_worker.complete_jobs(array[1]::bigint[])")).rejects.toMatchObject(refused);
    await expect(pool.query("select * from observing_jobs.kysely_migration")).rejects.toMatchObject(refused);
    await expect(pool.query("update taxa set status = 'resolved'")).rejects.toMatchObject(refused);
    await expect(pool.query("create table graphile_worker.enqueuer_probe (id int)")).rejects.toMatchObject(refused);
  });
});

describe("every other role", () => {
  test("loses write access to the job schemas, including grants made before", async () => {
    const pool = as.other.pool;
    await expect(
      pool.query("insert into graphile_worker._private_tasks (identifier) values ('other_probe')"),
    ).rejects.toMatchObject(refused);
    await expect(pool.query("delete from graphile_worker._private_jobs")).rejects.toMatchObject(refused);
    await expect(pool.query(`select graphile_worker.add_job('resolve_taxa', '{}'::json)`)).rejects.toMatchObject(refused);
    await expect(pool.query("create table graphile_worker.other_probe (id int)")).rejects.toMatchObject(refused);
  });
});

describe("the start-up privilege check", () => {
  test("finds nothing to say about the runtime role", async () => {
    expect(await findExcessPrivileges(as.runtime.pool)).toEqual([]);
  });

  test("names what the migrator and a superuser could do beyond the service's needs", async () => {
    expect(await findExcessPrivileges(as.migrator.pool)).toEqual(
      expect.arrayContaining(["may create schemas in this database", "owns schema graphile_worker", "owns schema observing_jobs"]),
    );
    expect(await findExcessPrivileges(env.pool)).toEqual([expect.stringMatching(/^connected as superuser /)]);
  });

  test("warns once when the service does not migrate at start-up, and never shows the connection string", async () => {
    const production = parseConfig(
      testEnvironment({ NODE_ENV: "production", DATABASE_URL: urlFor(names.migrator), API_TOKENS: "roles-test-token-0123456789", DASHBOARD_SESSION_SECRET: "roles-test-dashboard-session-secret-012345" }),
    );
    const { logger, logs } = makeCapturingLogger(production);
    await warnAboutExcessPrivileges(as.migrator.pool, logger, production);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatchObject({ level: 40, privileges: expect.arrayContaining(["owns schema graphile_worker"]) });
    expect(JSON.stringify(logs)).not.toContain(password);

    const developing = parseConfig(testEnvironment({ DATABASE_URL: urlFor(names.migrator) }));
    const quiet = makeCapturingLogger(developing);
    await warnAboutExcessPrivileges(as.migrator.pool, quiet.logger, developing);
    expect(quiet.logs).toEqual([]);
  });
});
