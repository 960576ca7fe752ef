/**
 * The service needs data access, not DDL (see src/db/roles.ts). When it does not migrate at
 * start-up, privileges beyond that are a standing risk, so it says so once at start-up.
 */
import type pg from "pg";
import type { Config } from "../config.ts";
import type { Logger } from "../observability/logger.ts";
import { JOB_SCHEMAS } from "./roles.ts";

/** What the connected role may do beyond what the service needs, in words; empty when nothing. */
export async function findExcessPrivileges(pool: pg.Pool): Promise<string[]> {
  const { rows: role } = await pool.query<{ name: string; superuser: boolean; createrole: boolean; createdb: boolean; bypassrls: boolean }>(
    `select rolname as name, rolsuper as superuser, rolcreaterole as createrole, rolcreatedb as createdb, rolbypassrls as bypassrls
       from pg_roles where rolname = current_user`,
  );
  const { rows: schemas } = await pool.query<{ schema: string; owns: boolean; create: boolean }>(
    `select nspname as schema, pg_has_role(current_user, nspowner, 'USAGE') as owns,
            has_schema_privilege(current_user, oid, 'CREATE') as create
       from pg_namespace where nspname = any($1)`,
    [JOB_SCHEMAS],
  );
  const { rows: database } = await pool.query<{ create: boolean }>(
    "select has_database_privilege(current_user, current_database(), 'CREATE') as create",
  );
  const findings: string[] = [];
  const me = role[0];
  if (me?.superuser) return [`connected as superuser ${me.name}`];
  if (me?.createrole) findings.push(`${me.name} may create roles`);
  if (me?.createdb) findings.push(`${me.name} may create databases`);
  if (me?.bypassrls) findings.push(`${me.name} bypasses row-level security`);
  if (database[0]?.create) findings.push("may create schemas in this database");
  for (const schema of schemas) {
    if (schema.owns) findings.push(`owns schema ${schema.schema}`);
    else if (schema.create) findings.push(`may create objects in schema ${schema.schema}`);
  }
  return findings;
}

/**
 * Logs one warning when the service, which does not migrate at start-up, connects with more
 * privilege than it needs. A process that migrates at start-up needs DDL, so it is not warned.
 * A failing check is logged and never stops the service.
 */
export async function warnAboutExcessPrivileges(pool: pg.Pool, logger: Logger, config: Config): Promise<void> {
  if (config.database.migrateOnStart) return;
  try {
    const findings = await findExcessPrivileges(pool);
    if (findings.length > 0) {
      logger.warn(
        { privileges: findings },
        `the service's database role has more privilege than it needs (${findings.join("; ")}): connect as the runtime role (observing-jobs setup-roles)`,
      );
    }
  } catch (error) {
    logger.warn({ err: error }, "could not check the database role's privileges");
  }
}
