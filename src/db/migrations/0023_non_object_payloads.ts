import { sql, type Kysely } from "kysely";
import { RECORDING_FUNCTIONS } from "./0008_job_records_v2.ts";

/**
 * Frozen in time. graphile-worker takes any JSON as a payload; 0008's functions assumed an object
 * where they took the trace context or the cron marker out with `-`, which raises on a scalar
 * (`"text"`, `42`, `null`) and takes a matching element out of an array:
 *
 * - insert_missing_record, which writes the record of a job added by plain SQL when its first
 *   attempt fails: the raise failed graphile-worker's failure statement itself, so the job stayed
 *   locked until graphile-worker's 4-hour reset, and came back to fail the same way. Now only an
 *   object loses its `_trace`, as at completion (0021), and a job whose task row is gone
 *   (graphile-worker never deletes one; a hand's delete could) still gets its record, named after
 *   the task's id, as at completion;
 * - is_cron: `? '_cron'` is true for the string "_cron" and for an array holding it, so such a
 *   payload counted as a cron job's and note_cron_run raised on it (the string) or kept a bogus
 *   cron_runs row (the array). Now only an object with a `_cron` key is a cron job's, and
 *   note_cron_run leaves anything else alone.
 */
const CHANGES: Record<string, Array<[from: string, to: string]>> = {
  insert_missing_record: [
    ["     select job.id, t.identifier, q.queue_name,\n", "     select job.id, coalesce(t.identifier, 'unknown task ' || job.task_id), q.queue_name,\n"],
    ["       observing_jobs.storable_payload(job.payload)::jsonb - '_trace',\n", "       case when jsonb_typeof(p.payload) = 'object' then p.payload - '_trace' else p.payload end,\n"],
    [
      "     from graphile_worker._private_tasks t\n     left join graphile_worker._private_job_queues q on q.id = job.job_queue_id\n     where t.id = job.task_id\n",
      "     from (select observing_jobs.storable_payload(job.payload) as payload) p\n     left join graphile_worker._private_tasks t on t.id = job.task_id\n     left join graphile_worker._private_job_queues q on q.id = job.job_queue_id\n",
    ],
  ],
  is_cron: [
    [
      "coalesce(observing_jobs.storable_payload(payload) ? '_cron', false)",
      "coalesce((select jsonb_typeof(p) = 'object' and p ? '_cron' from observing_jobs.storable_payload(payload) as p), false)",
    ],
  ],
  note_cron_run: [["     if entry is null then return; end if;\n", "     if jsonb_typeof(entry) is distinct from 'object' then return; end if;\n"]],
};

/** 0008's definition of `name`, as `create or replace`. */
function previousDefinition(name: string): string {
  const definition = RECORDING_FUNCTIONS.find((statement) => statement.startsWith(`create function observing_jobs.${name}(`));
  if (!definition || !CHANGES[name]!.every(([from]) => definition.includes(from))) throw new Error(`0023: 0008's ${name} is not the one this migration changes`);
  return definition.replace("create function", "create or replace function");
}

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [name, changes] of Object.entries(CHANGES)) {
    let definition = previousDefinition(name);
    for (const [from, to] of changes) definition = definition.replace(from, to);
    await sql.raw(definition).execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const name of Object.keys(CHANGES)) await sql.raw(previousDefinition(name)).execute(db);
}
