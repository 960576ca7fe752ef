import { sql, type Kysely } from "kysely";
import { RECORDING_FUNCTIONS } from "./0008_job_records_v2.ts";

/**
 * Frozen in time. Jobs added by plain SQL (`graphile_worker.add_job`, another service's insert)
 * have no record until their first attempt ends. 0008's record_deleted_jobs wrote the records of
 * such jobs completed together one row at a time (a lookup and an insert_missing_record call per
 * job). Here the whole completion batch's missing records are one insert, and only cron jobs still go through the
 * loop (note_cron_run, one upsert per cron job). The records are the same: insert_missing_record's
 * columns with phase 'succeeded'. One difference: a job counted in count_outcomes is one whose record
 * was inserted here (0008 counted every job it tried, a lost on-conflict race included). Measured
 * with track_functions on, fewer statements gave 3,600-4,300 jobs/s against ~2,700 for 20,000
 * SQL-added no-op jobs; uninstrumented (npm run drain-check) the gain was within the noise
 * (docs/BENCHMARKS.md, Analysis, 2026-12-03).
 *
 * Derived from 0008's text (as 0019 is), which a check keeps honest: 0008 is itself frozen.
 */

/** 0008's loop over a batch's jobs: a missing record inserted, and a cron run noted, per job. */
const PER_ROW = `     -- Jobs nobody recorded at enqueue, and cron entries' last success (both rare: most batches skip this).
     if done < total or has_cron then
       for job in select d.* from deleted d where d.locked_at >= now() - interval '4 hours' loop
         if not exists (select 1 from observing_jobs.job_records r where r.id = job.id) then
           perform observing_jobs.insert_missing_record(job, 'succeeded');
           done := done + 1;
         end if;
         if observing_jobs.is_cron(job.payload) then perform observing_jobs.note_cron_run(job, true); end if;
       end loop;
     end if;
`;

const SET_BASED = `     -- Jobs nobody recorded at enqueue (plain SQL, graphile-worker's own cron): one insert for the batch.
     if done < total then
       insert into observing_jobs.job_records
         (id, task, queue, source, payload, phase, priority, attempts, max_attempts, job_key, run_at, last_error,
          created_at, started_at, finished_at, worker_id, updated_at)
       select d.id, t.identifier, q.queue_name,
         case when observing_jobs.is_cron(d.payload) then 'cron' else 'sql' end,
         observing_jobs.storable_payload(d.payload)::jsonb - '_trace',
         'succeeded', d.priority, d.attempts, d.max_attempts, d.key, d.run_at, d.last_error,
         d.created_at, d.locked_at, now(), d.locked_by, now()
       from deleted d
       join graphile_worker._private_tasks t on t.id = d.task_id
       left join graphile_worker._private_job_queues q on q.id = d.job_queue_id
       where d.locked_at >= now() - interval '4 hours'
         and not exists (select 1 from observing_jobs.job_records r where r.id = d.id)
       on conflict (id) do nothing;
       get diagnostics missing = row_count;
       done := done + missing;
     end if;
     -- Cron entries' last success (rare: most batches skip this).
     if has_cron then
       for job in select d.* from deleted d where d.locked_at >= now() - interval '4 hours' and observing_jobs.is_cron(d.payload) loop
         perform observing_jobs.note_cron_run(job, true);
       end loop;
     end if;
`;

/** 0008's record_deleted_jobs, as `create or replace`. */
function previousDefinition(): string {
  const definition = RECORDING_FUNCTIONS.find((statement) => statement.startsWith("create function observing_jobs.record_deleted_jobs()"));
  if (!definition?.includes(PER_ROW)) throw new Error("0020: 0008's record_deleted_jobs is not the one this migration changes");
  return definition.replace("create function", "create or replace function");
}

/** This migration's record_deleted_jobs, as `create or replace`. Exported for 0021_completion_records_by_id, whose down restores it. */
export function recordDeletedJobs(): string {
  const declared = "     done integer;\n";
  const definition = previousDefinition().replace(PER_ROW, SET_BASED).replace(declared, `${declared}     missing integer;\n`);
  if (!definition.includes("missing integer;")) throw new Error("0020: 0008's record_deleted_jobs declares no `done`");
  return definition;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql.raw(recordDeletedJobs()).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(previousDefinition()).execute(db);
}
