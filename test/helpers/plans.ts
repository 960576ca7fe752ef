/**
 * What PostgreSQL plans for the queries a repository function sends: for tests that a listing or
 * a page view stays on indexes however large the history grows.
 */
import { Kysely, PostgresDialect, type CompiledQuery } from "kysely";
import type { Db } from "../../src/db/database.ts";
import type { Database } from "../../src/db/schema.ts";
import type { TestEnv } from "./env.ts";

/**
 * The plan PostgreSQL picks for a query; with `discourageSeqScans`, as if sequential scans were
 * expensive (on a test-sized table it would rightly scan).
 */
export async function planOf(env: TestEnv, query: CompiledQuery, options: { discourageSeqScans?: boolean } = { discourageSeqScans: true }): Promise<string> {
  const client = await env.pool.connect();
  try {
    if (options.discourageSeqScans) await client.query("set enable_seqscan = off");
    const { rows } = await client.query<{ "QUERY PLAN": string }>(`explain ${query.sql}`, [...query.parameters]);
    return rows.map((row) => row["QUERY PLAN"]).join("\n");
  } finally {
    await client.query("reset enable_seqscan");
    client.release();
  }
}

/** The queries a repository function sends, through a Kysely on the same pool that logs them (never destroyed: that would end the pool). */
export async function capture(env: TestEnv, run: (db: Db) => Promise<unknown>): Promise<CompiledQuery[]> {
  const queries: CompiledQuery[] = [];
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: env.pool }), log: (event) => void queries.push(event.query) });
  await run(db);
  return queries;
}
