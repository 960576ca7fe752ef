import { sql, type Kysely } from "kysely";
import { FENCE_RUNNER_LOCK } from "./0010_job_fencing.ts";

/**
 * Frozen in time. 0010's fetch fence read the pool's heartbeat row without a lock, so a sweep that
 * declared the pool dead and ran force_unlock_workers between the fence's check and the fetch's
 * commit missed the rows being fetched: they stayed locked by a dead pool (nobody sweeps it again)
 * for graphile-worker's 4 hours. Now the fence holds the heartbeat row (FOR SHARE) until the fetch
 * commits: a sweep waits for it and then releases what it fetched, or the fetch waits for the
 * sweep and finds the pool dead.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql.raw(fenceRunnerLock()).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(previousDefinition()).execute(db);
}

const LIVE_POOL = "and h.status = 'live'\n";

/** 0010's fence_runner_lock, as `create or replace`. */
function previousDefinition(): string {
  if (!FENCE_RUNNER_LOCK.includes(LIVE_POOL)) throw new Error("0015: 0010's fence_runner_lock is not the one this migration changes");
  return FENCE_RUNNER_LOCK.replace("create function", "create or replace function");
}

/** This migration's fence_runner_lock, as `create or replace`. Exported for 0022_fences_checked_once, whose down restores it. */
export function fenceRunnerLock(): string {
  return previousDefinition().replace(LIVE_POOL, `${LIVE_POOL}        for share\n`);
}
