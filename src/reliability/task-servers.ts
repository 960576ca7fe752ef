/**
 * Which running instances serve a task, from the live pools' heartbeat rows (each records the
 * tasks it serves). `observing-jobs add` asks before enqueueing: a task file added after the
 * service started is unknown to it, and its jobs would wait in the queue with no word why.
 */
import { sql } from "kysely";
import type { Db } from "../db/database.ts";

export interface TaskServers {
  /** Instances with a pool that beat within the window. */
  running: number;
  /** Of those, instances with a pool that serves the task. */
  serving: number;
  /** Of those, instances whose pools do not say what they serve (older than the tasks column). */
  unknown: number;
}

/** Null when this role may not read the heartbeats (an enqueue-only role): nothing can be said. */
export async function findTaskServers(db: Db, task: string, beatWithinMs: number): Promise<TaskServers | null> {
  try {
    const { rows } = await sql<TaskServers>`
      select count(distinct instance_id)::int as running,
             count(distinct instance_id) filter (where ${task} = any(tasks))::int as serving,
             count(distinct instance_id) filter (where tasks is null)::int as unknown
      from observing_jobs.worker_heartbeats
      where status = 'live' and last_seen > now() - make_interval(secs => ${beatWithinMs / 1000})`.execute(db);
    return rows[0]!;
  } catch (error) {
    if ((error as { code?: string }).code === "42501") return null; // insufficient_privilege
    throw error;
  }
}
