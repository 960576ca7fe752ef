import { sql, type Kysely } from "kysely";
import { recordDeletedJobs } from "./0020_missing_records_in_one_statement.ts";

/**
 * Frozen in time. record_deleted_jobs (0008, 0020) joined each completion batch's jobs to their
 * records with `r.id = d.id` and left the join to the planner. plpgsql plans a statement once per
 * session and keeps the plan until the table's statistics change, so a session that completed its
 * first batch while job_records was small (a new deployment; every benchmark's drain) kept a hash
 * join over a sequential scan of job_records for every batch after it, until autovacuum next
 * analysed the table: each batch read the whole history, and the anti-join that looked for missing
 * records read it twice. Measured on 20,000 SQL-added jobs completed 100 at a time by one session:
 * ~890 ms of trigger time, ~275 ms now.
 *
 * Now nothing in the completion path is left to a plan:
 *
 * - a batch's records are written by one upsert: a job added by plain SQL gets its record inserted
 *   (0020's columns), a job with a waiting record has it made succeeded (0008's columns; still a
 *   HOT update). The primary key arbitrates, whatever the table's size or statistics. The update
 *   and the count that came before it are gone;
 * - the removal path (remove_job, complete_jobs or a stale lock's delete, by someone else) runs
 *   only when the batch holds such a row, and is planned when it runs (EXECUTE), on the table as it
 *   is then: it is rare, and one plan per removal costs less than one scan of a big history;
 * - is_cron, a function PostgreSQL cannot inline (it sets search_path), is called only for payloads
 *   whose text names "_cron": a payload that does not cannot be a cron job's.
 *
 * What is recorded and counted is 0020's (the upsert's row count is the updated records plus the
 * inserted ones, which 0020 counted as `done` and `missing`), but for three cases that failed or
 * were lost before: a payload that is not an object (a string, a number, an array, null) is kept
 * as it is, where `- '_trace'` raised on a scalar (failing the whole completion batch) and took a
 * "_trace" element out of an array; and a job whose task row is gone (graphile-worker never
 * deletes one; a hand's delete could) still gets its record, named after the task's id.
 *
 * The cost of a plan that cannot go wrong is on jobs whose record exists (enqueued through the
 * service): the upsert computes the insert's row, storable_payload included, before it meets the
 * conflict, ~3.6 µs a job more than 0020's update (docs/BENCHMARKS.md, "The database's side of a
 * drain"; measured before the payload's object check and the task's left join were added). And
 * the conflict waits for a transaction that holds the record's row (an operator's action in
 * flight) whatever its phase, where 0020's update skipped a record no longer waiting.
 */
const RECORDS = {
  from: "     update observing_jobs.job_records r\n     set phase = 'succeeded',",
  to: "     -- Cron entries' last success",
  replace: () => `     select coalesce(bool_or(strpos(d.payload::text, '"_cron"') > 0 and observing_jobs.is_cron(d.payload)), false)
     into has_cron from deleted d;
     -- Completed attempts: the record made succeeded, or written now for a job nobody recorded at
     -- enqueue (plain SQL, graphile-worker's own cron).
     insert into observing_jobs.job_records as r
       (id, task, queue, source, payload, phase, priority, attempts, max_attempts, job_key, run_at, last_error,
        created_at, started_at, finished_at, worker_id, updated_at)
     select d.id, coalesce(t.identifier, 'unknown task ' || d.task_id), q.queue_name,
       case when has_cron and observing_jobs.is_cron(d.payload) then 'cron' else 'sql' end,
       case when jsonb_typeof(p.payload) = 'object' then p.payload - '_trace' else p.payload end,
       'succeeded', d.priority, d.attempts, d.max_attempts, d.key, d.run_at, d.last_error,
       d.created_at, d.locked_at, now(), d.locked_by, now()
     from deleted d
     cross join lateral (select observing_jobs.storable_payload(d.payload) as payload) p
     left join graphile_worker._private_tasks t on t.id = d.task_id
     left join graphile_worker._private_job_queues q on q.id = d.job_queue_id
     where d.locked_at >= now() - interval '4 hours'
     on conflict (id) do update set phase = 'succeeded', attempts = excluded.attempts, started_at = excluded.started_at,
       finished_at = excluded.finished_at, worker_id = excluded.worker_id, updated_at = excluded.updated_at
     where r.phase = 'waiting';
     get diagnostics done = row_count;
`,
};

/** 0008's removal statement, run only when the batch holds a removal, and planned then. */
const REMOVALS = {
  from: "     with removed as (\n",
  to: "     return null;\n",
  replace: (statement: string) =>
    `     if exists (select 1 from deleted d where d.locked_at is null or d.locked_at < now() - interval '4 hours') then\n       execute $removed$\n${statement}     $removed$;\n     end if;\n`,
};

/** Declared by 0008 and 0020 for the statements replaced here. */
const UNUSED = ["     missing integer;\n", "     total integer;\n"];

/** `definition` with the text from `part.from` up to `part.to` replaced by what `part.replace` makes of it. */
function replaceBetween(definition: string, part: { from: string; to: string; replace: (text: string) => string }): string {
  const start = definition.indexOf(part.from);
  const end = definition.indexOf(part.to, start);
  if (start < 0 || end < 0) throw new Error(`0021: 0020's record_deleted_jobs has no ${JSON.stringify(part.from.trim())} before ${JSON.stringify(part.to.trim())}`);
  return definition.slice(0, start) + part.replace(definition.slice(start, end)) + definition.slice(end);
}

export async function up(db: Kysely<unknown>): Promise<void> {
  let definition = replaceBetween(replaceBetween(recordDeletedJobs(), RECORDS), REMOVALS);
  for (const declaration of UNUSED) {
    if (!definition.includes(declaration)) throw new Error(`0021: 0020's record_deleted_jobs does not declare ${declaration.trim()}`);
    definition = definition.replace(declaration, "");
  }
  await sql.raw(definition).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(recordDeletedJobs()).execute(db);
}
