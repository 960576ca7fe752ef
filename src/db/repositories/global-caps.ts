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
  /** Slots whose job is still locked by the pool that took it: attempts running under the cap, on any instance (above `slots` for a moment after the limit was lowered). */
  inUse: number;
}

/**
 * Makes the database hold these caps (a changed limit takes effect at once, for every instance);
 * groups not listed are left alone for older instances still running. Returns the limits it changed.
 */
export async function recordGlobalCaps(db: Db, caps: readonly GlobalCap[]): Promise<Array<{ group: string; from: number; to: number }>> {
  if (caps.length === 0) return [];
  const groups = caps.map((cap) => cap.group);
  const slots = caps.map((cap) => cap.slots);
  const { rows } = await sql<{ group_name: string; previous: number; slots: number }>`
    with wanted as (select * from unnest(${groups}::text[], ${slots}::int[]) as w(group_name, slots)),
    before as (select c.group_name, c.slots from observing_jobs.global_caps c join wanted using (group_name)),
    caps as (
      insert into observing_jobs.global_caps (group_name, slots) select group_name, slots from wanted
      on conflict (group_name) do update set slots = excluded.slots, updated_at = now()
      where global_caps.slots is distinct from excluded.slots
      returning group_name, slots
    ),
    added as (
      insert into observing_jobs.global_cap_slots (group_name, slot)
      select w.group_name, s.slot from wanted w cross join lateral generate_series(0, w.slots - 1) as s(slot)
      on conflict do nothing
    )
    select caps.group_name, before.slots as previous, caps.slots from caps join before using (group_name)`.execute(db);
  return rows.map((row) => ({ group: row.group_name, from: row.previous, to: row.slots }));
}

/** Every global cap with the slots in use now. */
export async function listGlobalCaps(db: Db): Promise<GlobalCapUsage[]> {
  const { rows } = await sql<{ group_name: string; slots: number; in_use: number }>`
    select c.group_name, c.slots, count(distinct j.id)::int as in_use
    from observing_jobs.global_caps c
    left join observing_jobs.global_cap_slots s on s.group_name = c.group_name
    left join graphile_worker._private_jobs j on j.id = s.job_id and j.locked_by = s.pool_id
    group by c.group_name, c.slots
    order by c.group_name`.execute(db);
  return rows.map((row) => ({ group: row.group_name, slots: row.slots, inUse: row.in_use }));
}
