/**
 * Dashboard sessions as the server records them (observing_jobs.dashboard_sessions): opened at
 * sign-in, looked up on every dashboard request, ended at sign-out. Kept in the database so that
 * every instance sees a sign-out at once. Only the SHA-256 of a session id is stored.
 */
import { createHash, randomBytes } from "node:crypto";
import { sql } from "kysely";
import type { Db } from "../database.ts";

export interface OpenSession {
  callerId: string;
  expiresAt: Date;
}

function hashOf(sessionId: string): Buffer {
  return createHash("sha256").update(sessionId).digest();
}

/** Records a new session and returns its id (256 random bits), for the cookie. Clears expired sessions. */
export async function openSession(db: Db, callerId: string, ttlMs: number): Promise<{ id: string; expiresAt: Date }> {
  const id = randomBytes(32).toString("base64url");
  const expiresAt = new Date(Date.now() + ttlMs);
  await db.insertInto("observing_jobs.dashboard_sessions").values({ id_hash: hashOf(id), caller_id: callerId, expires_at: expiresAt }).execute();
  await db.deleteFrom("observing_jobs.dashboard_sessions").where("expires_at", "<", sql<Date>`now()`).execute();
  return { id, expiresAt };
}

/** The session while it is open (not signed out, not expired by the database's clock), else null. */
export async function findOpenSession(db: Db, sessionId: string): Promise<OpenSession | null> {
  const row = await db
    .selectFrom("observing_jobs.dashboard_sessions")
    .select(["caller_id", "expires_at"])
    .where("id_hash", "=", hashOf(sessionId))
    .where("ended_at", "is", null)
    .where("expires_at", ">", sql<Date>`now()`)
    .executeTakeFirst();
  return row ? { callerId: row.caller_id, expiresAt: row.expires_at } : null;
}

/** Signs a session out: from now on its cookie opens nothing, on any instance. */
export async function endSession(db: Db, sessionId: string): Promise<void> {
  await db.updateTable("observing_jobs.dashboard_sessions").set({ ended_at: sql<Date>`now()` }).where("id_hash", "=", hashOf(sessionId)).where("ended_at", "is", null).execute();
}
