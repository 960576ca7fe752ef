/**
 * One pg pool per process, shared by Kysely and graphile-worker, so the connection count is
 * the worker concurrency plus a small fixed overhead (see docs on connections).
 */
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import type { Logger } from "../observability/logger.ts";
import type { Database } from "./schema.ts";

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  pool: pg.Pool;
  db: Db;
  close(): Promise<void>;
}

/** Connections beyond the workers' own: LISTEN, cron, HTTP requests, health checks. */
export const POOL_OVERHEAD = 5;

export function makeDatabase(connectionString: string, options: { maxConnections: number; logger: Logger }): DatabaseHandle {
  const pool = new pg.Pool({ connectionString, max: options.maxConnections, application_name: "observing-jobs" });
  // An idle client losing its connection (database restart) must not crash the process.
  pool.on("error", (error) => options.logger.warn({ err: error }, "idle database connection failed"));
  pool.on("connect", (client) => {
    client.on("error", (error) => options.logger.warn({ err: error }, "database connection failed"));
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    pool,
    db,
    async close() {
      if (closed) return;
      closed = true;
      // Kysely's destroy ends the pool it was given, but only once Kysely has used it.
      await db.destroy();
      if (!pool.ended) await pool.end();
    },
  };
}
