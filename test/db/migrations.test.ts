/**
 * Migrations are frozen in time, and each `down` must put back the schema its `up` found. An empty
 * database is stepped through every migration in order: the catalog is read before the `up`, after
 * the `up` and its `down`, and the two must be equal. Then the `up` runs again, and once all have,
 * the schema must be the one a fresh database gets (global-setup's template, migrated to latest).
 *
 * graphile-worker's own schema is not one of these migrations: src/db/migrate.ts installs it first
 * (its runMigrations), and so does this test; the migrations hang triggers on its tables.
 *
 * The catalog is read by query, not pg_dump: tests also run on an embedded PostgreSQL without
 * client binaries.
 */
import { randomBytes } from "node:crypto";
import { runMigrations } from "graphile-worker";
import { sql } from "kysely";
import { Migrator, type MigrationResultSet } from "kysely/migration";
import pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { makeDatabase, type DatabaseHandle, type Db } from "../../src/db/database.ts";
import { SERVICE_SCHEMA } from "../../src/db/migrate.ts";
import { migrations } from "../../src/db/migrations/index.ts";
import { makeWorkerLogger } from "../../src/observability/logger.ts";
import { withDatabase } from "../global-setup.ts";
import { createTestDatabase } from "../helpers/database.ts";

/**
 * One line per object the migrations may create or change: relations (with their storage options
 * and privileges), columns (in order, with type, nullability, default, identity), constraints,
 * indexes, sequences and functions of the service's schema and of `public` (where the app's `taxa`
 * lives), and the triggers on those and on graphile-worker's tables. The migrator's own tables are
 * left out.
 */
const CATALOG = sql<{ line: string }>`
  with rels as (
    select c.oid, n.nspname || '.' || c.relname as name, c.relkind, c.reloptions, c.relacl, c.relrowsecurity
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in (${SERVICE_SCHEMA}, 'public') and c.relkind <> 'i' and c.relname not like 'kysely_migration%'
  )
  select 'relation ' || name || ' ' || relkind::text || coalesce(' ' || reloptions::text, '') || coalesce(' acl ' || relacl::text, '')
    || case when relrowsecurity then ' row security' else '' end as line
  from rels
  union all
  select 'column ' || r.name || ' #' || row_number() over (partition by a.attrelid order by a.attnum) || ' ' || quote_ident(a.attname)
    || ' ' || format_type(a.atttypid, a.atttypmod) || case when a.attnotnull then ' not null' else '' end
    || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
    || case when a.attidentity <> '' then ' identity ' || a.attidentity::text else '' end
    || case when a.attgenerated <> '' then ' generated ' || a.attgenerated::text else '' end
    || case when a.attcollation <> t.typcollation then ' collation ' || a.attcollation::regcollation::text else '' end
  from rels r
  join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped and r.relkind <> 'S'
  join pg_type t on t.oid = a.atttypid
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
  union all
  select 'constraint ' || r.name || ' ' || quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid)
  from rels r join pg_constraint k on k.conrelid = r.oid
  union all
  select 'index ' || pg_get_indexdef(i.indexrelid) from rels r join pg_index i on i.indrelid = r.oid
  union all
  select 'sequence ' || r.name || ' ' || format_type(s.seqtypid, null) || ' ' || s.seqstart || ' ' || s.seqincrement || ' '
    || s.seqmin || ' ' || s.seqmax || ' ' || s.seqcache || case when s.seqcycle then ' cycle' else '' end
  from rels r join pg_sequence s on s.seqrelid = r.oid
  union all
  select 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
  from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
  where n.nspname in (${SERVICE_SCHEMA}, 'public', 'graphile_worker') and not t.tgisinternal
  union all
  select 'function ' || pg_get_functiondef(p.oid) || coalesce(' acl ' || p.proacl::text, '')
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
  where n.nspname in (${SERVICE_SCHEMA}, 'public') and p.prokind in ('f', 'p')
  union all
  select 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text
  from pg_type t join pg_namespace n on n.oid = t.typnamespace
  where n.nspname in (${SERVICE_SCHEMA}, 'public') and t.typtype in ('d', 'e', 'r', 'm')`;

async function readCatalog(db: Db): Promise<string[]> {
  const { rows } = await CATALOG.execute(db);
  return rows.map((row) => row.line).sort();
}

/**
 * What a down leaves on purpose. `taxa` is the app's table: 0001 creates it only where it is
 * missing and adds the columns this service needs, 0003 adds more, and their downs drop only the
 * service's indexes, never the table or a column that may hold the app's data.
 */
const KEPT_BY_DOWN: Record<string, (line: string) => boolean> = {
  "0001_taxa": (line) => /^((relation|column|constraint|sequence) public\.taxa(_id_seq)? |index CREATE UNIQUE INDEX taxa_pkey ON public\.taxa )/.test(line),
  "0003_taxa_enrichment": (line) => /^(column|constraint) public\.taxa /.test(line),
};

function changes(before: string[], after: string[]): { added: string[]; removed: string[] } {
  return { added: after.filter((line) => !before.includes(line)), removed: before.filter((line) => !after.includes(line)) };
}

function succeeded({ error, results = [] }: MigrationResultSet): void {
  if (error) throw new Error(`migration ${results.find((result) => result.status === "Error")?.migrationName ?? "?"} failed`, { cause: error });
}

const adminUrl = inject("adminDatabaseUrl");
/** Empty, not cloned from the migrated template: the migrations start from nothing. */
const databaseName = `observing_jobs_test_${randomBytes(6).toString("hex")}`;
const logger = pino({ level: "warn" });
const admin = new pg.Pool({ connectionString: adminUrl, max: 1 });
let handle: DatabaseHandle;
let migrator: Migrator;

beforeAll(async () => {
  await admin.query(`create database ${databaseName}`);
  handle = makeDatabase(withDatabase(adminUrl, databaseName), { maxConnections: 2, logger });
  await runMigrations({ pgPool: handle.pool, logger: makeWorkerLogger(logger) });
  // As src/db/migrate.ts builds it.
  migrator = new Migrator({
    db: handle.db,
    provider: { getMigrations: async () => migrations },
    migrationTableSchema: SERVICE_SCHEMA,
    migrationTableName: "kysely_migration",
    migrationLockTableName: "kysely_migration_lock",
  });
});

afterAll(async () => {
  await handle?.close();
  await admin.query(`drop database if exists ${databaseName} with (force)`);
  await admin.end();
});

describe("migrations", () => {
  test.each(Object.keys(migrations).sort())("%s: down restores the schema its up found", async (name) => {
    const before = await readCatalog(handle.db);
    succeeded(await migrator.migrateTo(name));
    const migrated = await readCatalog(handle.db);
    succeeded(await migrator.migrateDown());
    const restored = await readCatalog(handle.db);
    // Up again before any assertion, so the next migration starts where it should even when this one fails.
    succeeded(await migrator.migrateTo(name));
    const migratedAgain = await readCatalog(handle.db);

    const { added, removed } = changes(before, restored);
    const kept = KEPT_BY_DOWN[name] ?? (() => false);
    expect({ added: added.filter((line) => !kept(line)), removed }).toEqual({ added: [], removed: [] });
    expect(migratedAgain).toEqual(migrated);
  });

  test("after every up, down and up again, the schema is the one a fresh database gets", async () => {
    const fresh = await createTestDatabase();
    const other = makeDatabase(fresh.url, { maxConnections: 1, logger });
    try {
      expect(await readCatalog(handle.db)).toEqual(await readCatalog(other.db));
    } finally {
      await other.close();
      await fresh.drop();
    }
  });
});
