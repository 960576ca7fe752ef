/**
 * One entry point for every schema the service needs: graphile-worker's own, then the
 * service's Kysely migrations. Both are idempotent, so running it on every start is safe.
 */
import { runMigrations } from "graphile-worker";
import { Migrator, type MigrationResult } from "kysely/migration";
import type pg from "pg";
import { makeWorkerLogger, type Logger } from "../observability/logger.ts";
import type { Db } from "./database.ts";
import { migrations } from "./migrations/index.ts";

/** The schema holding the service's own tables (never graphile-worker's). */
export const SERVICE_SCHEMA = "observing_jobs";
const MIGRATION_TABLE = "kysely_migration";

/** The newest migration this build knows; readiness compares the database against it. */
export const EXPECTED_SCHEMA_VERSION = Object.keys(migrations).sort().at(-1)!;

export async function migrateDatabase(pool: pg.Pool, db: Db, logger: Logger): Promise<MigrationResult[]> {
  await runMigrations({ pgPool: pool, logger: makeWorkerLogger(logger) });
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableSchema: SERVICE_SCHEMA,
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: `${MIGRATION_TABLE}_lock`,
  });
  const { error, results = [] } = await migrator.migrateToLatest();
  for (const result of results) {
    if (result.status === "Success") logger.info({ migration: result.migrationName }, "applied migration");
  }
  if (error) throw new Error(`migration failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  return results;
}

/** The newest applied migration, or null when the service schema has never been migrated. */
export async function findSchemaVersion(pool: pg.Pool): Promise<string | null> {
  const table = `${SERVICE_SCHEMA}.${MIGRATION_TABLE}`;
  const { rows: exists } = await pool.query<{ found: boolean }>("select to_regclass($1) is not null as found", [table]);
  if (!exists[0]?.found) return null;
  const { rows } = await pool.query<{ name: string | null }>(`select max(name) as name from ${table}`);
  return rows[0]?.name ?? null;
}

/**
 * Refuses to start a build whose migrations have not been applied (production runs them as a
 * pre-deploy step): its jobs would otherwise run against tables they do not know.
 */
export async function assertSchemaCurrent(pool: pg.Pool): Promise<void> {
  const version = await findSchemaVersion(pool);
  if (version === null || version < EXPECTED_SCHEMA_VERSION) {
    throw new Error(`the database schema is at ${version ?? "nothing"}, this build needs ${EXPECTED_SCHEMA_VERSION}: run \`observing-jobs migrate\` first`);
  }
}
