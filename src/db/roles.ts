/**
 * Least-privilege database roles, set up by `observing-jobs setup-roles` as the database's admin
 * (creating roles and handing over schemas needs privileges that neither the service nor the
 * migrate job should hold, and role names differ per environment):
 *
 *   migrator   owns graphile-worker's schema and the service's: the only role that runs DDL (the migrate job)
 *   runtime    the service: reads and writes the job tables and calls graphile-worker's functions, no DDL
 *   enqueuers  other services: may call graphile_worker.add_job / add_jobs and nothing else in the job schemas,
 *              and not for internal tasks (prune_job_history, ...): a trigger refuses those to any login
 *              role that may not insert into the jobs table itself (migration 0011_internal_tasks)
 *
 * Everyone else loses write access to the job schemas. Missing roles are created without LOGIN
 * (give them passwords, or create them beforehand as Cloud SQL users). Idempotent: run it again
 * after the first `migrate` on a new database and after upgrading graphile-worker, whose
 * migrations may add tables (which need the runtime's row-level security policy) or replace
 * add_job (dropping the SECURITY DEFINER set here).
 */
import pg from "pg";
import { SERVICE_SCHEMA } from "./migrate.ts";

/** graphile-worker's schema (its default; the runner is not configured with another). */
export const WORKER_SCHEMA = "graphile_worker";
export const JOB_SCHEMAS = [WORKER_SCHEMA, SERVICE_SCHEMA] as const;

export interface RoleNames {
  migrator: string;
  runtime: string;
  enqueuers: readonly string[];
}

export const DEFAULT_ROLE_NAMES: RoleNames = {
  migrator: "observing_jobs_migrator",
  runtime: "observing_jobs_runtime",
  enqueuers: ["observing_jobs_enqueuer"],
};

/** Columns of the app's `taxa` the service reads. A task that touches another column adds it here. */
export const TAXA_COLUMNS_READ = [
  "id",
  "scientific_name",
  "kingdom_hint",
  "status",
  "gbif_usage_key",
  "gbif_accepted_usage_key",
  "gbif_checklist_key",
  "accepted_name",
  "rank",
  "usage_status",
  "kingdom",
  "phylum",
  "class",
  "order",
  "family",
  "genus",
  "species",
  "match_type",
  "confidence",
  "resolution_note",
  "resolved_at",
  "last_error",
  "created_at",
  "updated_at",
  // 0003_taxa_enrichment: the app maintains the first two (what makes a taxon "hot").
  "last_observed_at",
  "observation_count",
  "wikidata_id",
  "thumbnail_file",
  "thumbnail_url",
  "thumbnail_width",
  "thumbnail_status",
  "thumbnail_note",
  "thumbnail_refreshed_at",
  "iucn_category",
  "iucn_assessment_year",
  "iucn_assessment_id",
  "iucn_status",
  "iucn_note",
  "iucn_synced_at",
  "backbone_status",
  "backbone_note",
  "backbone_checked_at",
] as const;

/** Columns of `taxa` the service writes: what its jobs record, never the app's own fields. */
export const TAXA_COLUMNS_WRITTEN = TAXA_COLUMNS_READ.filter(
  (column) => !["id", "scientific_name", "kingdom_hint", "created_at", "last_observed_at", "observation_count"].includes(column),
);

/** Functions an enqueuer may call; they run as their owner (the migrator) so no table grant is needed. */
const ENQUEUE_FUNCTIONS = ["add_job", "add_jobs"];

export interface RoleSetupResult {
  /** Roles that did not exist and were created without LOGIN. */
  created: string[];
  /** Things an operator still has to do, in words. */
  notes: string[];
}

export async function setupRoles(pool: pg.Pool, roles: RoleNames): Promise<RoleSetupResult> {
  const { migrator, runtime, enqueuers } = roles;
  const all = [migrator, runtime, ...enqueuers];
  if (all.some((name) => name.trim() === "") || new Set(all).size !== all.length) {
    throw new Error(`role names must be non-empty and distinct, got ${all.join(", ")}`);
  }
  const id = pg.escapeIdentifier;
  const client = await pool.connect();
  const run = (text: string, values?: unknown[]) => client.query(text, values);
  const result: RoleSetupResult = { created: [], notes: [] };
  try {
    await run("begin");
    for (const name of all) {
      const { rowCount } = await run("select 1 from pg_roles where rolname = $1", [name]);
      if (!rowCount) {
        await run(`create role ${id(name)} nologin`);
        result.created.push(name);
      }
    }
    const { rows: admin } = await run("select rolsuper as superuser from pg_roles where rolname = current_user");
    // Handing objects to the migrator needs membership in it (Cloud SQL's admin is no superuser).
    if (!admin[0]?.superuser) await run(`grant ${id(migrator)} to current_user`);

    const { rows: database } = await run("select current_database() as name");
    const databaseName = id(database[0].name as string);
    await run(`grant connect on database ${databaseName} to ${all.map(id).join(", ")}`);
    // graphile-worker's installer runs `create schema if not exists`, which checks this privilege first.
    await run(`grant create on database ${databaseName} to ${id(migrator)}`);

    await handOverJobSchemas(run, migrator);
    await revokeFromEveryoneElse(run, all);

    await grantRuntime(run, roles);
    result.notes.push(...(await grantEnqueuers(run, enqueuers)));
    result.notes.push(...(await grantTaxa(run, roles)));
    await run("commit");
    return result;
  } catch (error) {
    await run("rollback");
    throw error;
  } finally {
    client.release();
  }
}

type Run = (text: string, values?: unknown[]) => Promise<pg.QueryResult>;

/** Data access to the job tables and graphile-worker's functions, now and for what later migrations create. */
async function grantRuntime(run: Run, { migrator, runtime }: RoleNames): Promise<void> {
  const id = pg.escapeIdentifier;
  const schemas = JOB_SCHEMAS.map(id).join(", ");
  await run(`grant usage on schema ${schemas} to ${id(runtime)}`);
  await run(`grant select, insert, update, delete on all tables in schema ${id(WORKER_SCHEMA)} to ${id(runtime)}`);
  await run(`grant usage on all sequences in schema ${id(WORKER_SCHEMA)} to ${id(runtime)}`);
  await run(`grant execute on all routines in schema ${id(WORKER_SCHEMA)} to ${id(runtime)}`);
  // The service's own tables (job history, heartbeats) are the runtime's to write; DDL stays with the migrator.
  await run(`grant select, insert, update, delete on all tables in schema ${id(SERVICE_SCHEMA)} to ${id(runtime)}`);
  await run(`grant usage on all sequences in schema ${id(SERVICE_SCHEMA)} to ${id(runtime)}`);
  // ...except the migrations' own bookkeeping, which only the migrator may change.
  for (const table of ["kysely_migration", "kysely_migration_lock"]) {
    const { rows } = await run("select to_regclass($1) is not null as found", [`${SERVICE_SCHEMA}.${table}`]);
    if (rows[0]?.found) await run(`revoke insert, update, delete, truncate on ${id(SERVICE_SCHEMA)}.${id(table)} from ${id(runtime)}`);
  }
  // graphile-worker turns row-level security on for its private tables with no policy, which
  // leaves them to their owner alone; the runtime gets one policy per table, named after it.
  const { rows: guarded } = await run(
    "select c.oid::regclass::text as name from pg_class c where c.relnamespace = $1::regnamespace and c.relrowsecurity",
    [WORKER_SCHEMA],
  );
  for (const { name } of guarded as Array<{ name: string }>) {
    await run(`drop policy if exists ${id(runtime)} on ${name}`);
    await run(`create policy ${id(runtime)} on ${name} for all to ${id(runtime)} using (true) with check (true)`);
  }
  // What the next migrations create gets the same grants.
  const future = `alter default privileges for role ${id(migrator)}`;
  await run(`${future} revoke execute on routines from public`);
  await run(`${future} in schema ${id(WORKER_SCHEMA)} grant select, insert, update, delete on tables to ${id(runtime)}`);
  await run(`${future} in schema ${id(WORKER_SCHEMA)} grant usage on sequences to ${id(runtime)}`);
  await run(`${future} in schema ${id(WORKER_SCHEMA)} grant execute on routines to ${id(runtime)}`);
  await run(`${future} in schema ${id(SERVICE_SCHEMA)} grant select, insert, update, delete on tables to ${id(runtime)}`);
  await run(`${future} in schema ${id(SERVICE_SCHEMA)} grant usage on sequences to ${id(runtime)}`);
}

/** add_job and add_jobs for the enqueuers, and nothing else in the job schemas. */
async function grantEnqueuers(run: Run, enqueuers: readonly string[]): Promise<string[]> {
  const id = pg.escapeIdentifier;
  if (enqueuers.length > 0) await run(`grant usage on schema ${id(WORKER_SCHEMA)} to ${enqueuers.map(id).join(", ")}`);
  const { rows: enqueueFunctions } = await run(
    `select p.oid::regprocedure::text as signature from pg_proc p
     where p.pronamespace = $1::regnamespace and p.proname = any($2)`,
    [WORKER_SCHEMA, ENQUEUE_FUNCTIONS],
  );
  const notes = enqueueFunctions.length === 0 ? ["graphile-worker is not installed yet: run migrate, then setup-roles again"] : [];
  for (const { signature } of enqueueFunctions as Array<{ signature: string }>) {
    // Runs as the migrator, so an enqueuer needs no access to the job tables; a fixed search_path
    // keeps a caller's objects from being picked up inside it.
    await run(`alter function ${signature} security definer set search_path = pg_catalog, pg_temp`);
    if (enqueuers.length > 0) await run(`grant execute on function ${signature} to ${enqueuers.map(id).join(", ")}`);
  }
  return notes;
}

/** The migrator owns both job schemas and everything in them, whoever created it. */
async function handOverJobSchemas(run: Run, migrator: string): Promise<void> {
  const id = pg.escapeIdentifier;
  for (const schema of JOB_SCHEMAS) {
    await run(`create schema if not exists ${id(schema)} authorization ${id(migrator)}`);
    await run(`alter schema ${id(schema)} owner to ${id(migrator)}`);
  }
  const { rows } = await run(
    `select format('alter %s %s owner to %I',
              case c.relkind when 'v' then 'view' when 'm' then 'materialized view' when 'S' then 'sequence'
                             when 'f' then 'foreign table' else 'table' end,
              c.oid::regclass, $1::text) as statement
       from pg_class c
      where c.relnamespace::regnamespace::text = any($2)
        and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
        and c.relowner <> (select oid from pg_roles where rolname = $1)
        -- sequences behind identity and serial columns follow their table
        and not exists (select 1 from pg_depend d
                         where d.classid = 'pg_class'::regclass and d.objid = c.oid
                           and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i'))
     union all
     select format('alter routine %s owner to %I', p.oid::regprocedure, $1::text)
       from pg_proc p
      where p.pronamespace::regnamespace::text = any($2) and p.proowner <> (select oid from pg_roles where rolname = $1)
     union all
     select format('alter type %s owner to %I', t.oid::regtype, $1::text)
       from pg_type t
      where t.typnamespace::regnamespace::text = any($2) and t.typowner <> (select oid from pg_roles where rolname = $1)
        and (t.typtype in ('e', 'd', 'r', 'm')
             or (t.typtype = 'c' and (select relkind from pg_class where oid = t.typrelid) = 'c'))`,
    [migrator, JOB_SCHEMAS],
  );
  for (const { statement } of rows as Array<{ statement: string }>) await run(statement);
}

/** Takes write access to the job schemas away from PUBLIC and from every role not named here. */
async function revokeFromEveryoneElse(run: Run, ours: string[]): Promise<void> {
  const id = pg.escapeIdentifier;
  for (const schema of JOB_SCHEMAS.map(id)) {
    await run(`revoke all on schema ${schema} from public`);
    await run(`revoke all on all tables in schema ${schema} from public`);
    await run(`revoke all on all sequences in schema ${schema} from public`);
    await run(`revoke all on all routines in schema ${schema} from public`);
  }
  const { rows } = await run(
    `select distinct grantee::regrole::text as grantee from (
       select (aclexplode(c.relacl)).grantee, c.relowner as owner from pg_class c
        where c.relnamespace::regnamespace::text = any($1) and c.relacl is not null
       union all
       select (aclexplode(p.proacl)).grantee, p.proowner from pg_proc p
        where p.pronamespace::regnamespace::text = any($1) and p.proacl is not null
       union all
       select (aclexplode(n.nspacl)).grantee, n.nspowner from pg_namespace n
        where n.nspname = any($1) and n.nspacl is not null
     ) grants
     where grantee <> 0 and grantee <> owner and pg_get_userbyid(grantee) <> all($2)`,
    [JOB_SCHEMAS, ours],
  );
  for (const { grantee } of rows as Array<{ grantee: string }>) {
    for (const schema of JOB_SCHEMAS.map(id)) {
      await run(`revoke create on schema ${schema} from ${grantee}`);
      await run(`revoke insert, update, delete, truncate, references, trigger on all tables in schema ${schema} from ${grantee}`);
      await run(`revoke update on all sequences in schema ${schema} from ${grantee}`);
      await run(`revoke execute on all routines in schema ${schema} from ${grantee}`);
    }
  }
}

/** The runtime's columns of the app's `taxa`; returns notes when something is left to the operator. */
async function grantTaxa(run: Run, { migrator, runtime }: RoleNames): Promise<string[]> {
  const id = pg.escapeIdentifier;
  const { rows } = await run(
    `select c.oid::regclass::text as name, pg_get_userbyid(c.relowner) as owner,
            pg_has_role($1, c.relowner, 'USAGE') as migrator_owns
       from pg_class c where c.oid = to_regclass('taxa')`,
    [migrator],
  );
  const taxa = rows[0] as { name: string; owner: string; migrator_owns: boolean } | undefined;
  if (!taxa) return ["taxa does not exist yet: run migrate (it creates taxa), then setup-roles again to grant the runtime its columns"];
  const columns = (list: readonly string[]) => list.map(id).join(", ");
  await run(`grant select (${columns(TAXA_COLUMNS_READ)}), update (${columns(TAXA_COLUMNS_WRITTEN)}) on ${taxa.name} to ${id(runtime)}`);
  return taxa.migrator_owns
    ? []
    : [
        `taxa belongs to ${taxa.owner}: migrations that alter it (0001_taxa adds columns) need that owner; ` +
          `grant ${id(taxa.owner)} to ${id(migrator)}, or apply them as ${taxa.owner}`,
      ];
}
