/**
 * The slots of the global concurrency caps (migration 0018_global_caps): written at every start
 * from the task files, read by the API, the dashboard and the metrics. The slots themselves are
 * taken and freed by graphile-worker's own statements, through the migration's triggers.
 */
import { sql } from "kysely";
import type { Db } from "../database.ts";

export interface GlobalCap {
  group: string;
  slots: number;
}

export interface GlobalCapUsage extends GlobalCap {
  /** Slots whose job is still locked by the pool that took it: attempts running under the cap, on any instance. */
  inUse: number;
}

/** Makes the database hold these caps (a changed limit takes effect at once); groups not listed are left alone for older instances still running. */
export async function recordGlobalCaps(db: Db, caps: readonly GlobalCap[]): Promise<void> {
  if (caps.length === 0) return;
  const groups = caps.map((cap) => cap.group);
  const slots = caps.map((cap) => cap.slots);
  await sql`
    with wanted as (select * from unnest(${groups}::text[], ${slots}::int[]) as w(group_name, slots)),
    caps as (
      insert into observing_jobs.global_caps (group_name, slots) select group_name, slots from wanted
      on conflict (group_name) do update set slots = excluded.slots, updated_at = now()
      where global_caps.slots is distinct from excluded.slots
    )
    insert into observing_jobs.global_cap_slots (group_name, slot)
    select w.group_name, s.slot from wanted w cross join lateral generate_series(0, w.slots - 1) as s(slot)
    on conflict do nothing`.execute(db);
}

/** Every global cap with the slots in use now. */
export async function listGlobalCaps(db: Db): Promise<GlobalCapUsage[]> {
  const { rows } = await sql<{ group_name: string; slots: number; in_use: number }>`
    select c.group_name, c.slots, count(j.id)::int as in_use
    from observing_jobs.global_caps c
    left join observing_jobs.global_cap_slots s on s.group_name = c.group_name and s.slot < c.slots
    left join graphile_worker._private_jobs j on j.id = s.job_id and j.locked_by = s.pool_id
    group by c.group_name, c.slots
    order by c.group_name`.execute(db);
  return rows.map((row) => ({ group: row.group_name, slots: row.slots, inUse: row.in_use }));
}
