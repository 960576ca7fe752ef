import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. Dashboard sessions kept by the server, so that signing out ends a session on every
 * instance at once (a signed cookie alone stays valid until it expires). The cookie holds a random
 * session id; the table holds only its SHA-256, so a copy of the table opens no session.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table observing_jobs.dashboard_sessions (
      id_hash bytea primary key,
      caller_id text not null,
      created_at timestamptz not null default now(),
      expires_at timestamptz not null,
      -- Set when the operator signs out: the session opens nothing from then on.
      ended_at timestamptz
    )`.execute(db);
  // Sign-ins delete sessions past their expiry.
  await sql`create index dashboard_sessions_expires_at_idx on observing_jobs.dashboard_sessions (expires_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table if exists observing_jobs.dashboard_sessions`.execute(db);
}
