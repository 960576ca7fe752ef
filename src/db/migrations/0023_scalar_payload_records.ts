import { sql, type Kysely } from "kysely";
import { RECORDING_FUNCTIONS } from "./0008_job_records_v2.ts";

/**
 * Frozen in time. insert_missing_record (0008) writes the record of a job added by plain SQL when
 * its first attempt fails; it took the trace context out of the payload with `- '_trace'`, which
 * raises on a JSON scalar (`"text"`, `42`, `null`: graphile-worker accepts any JSON) and takes a
 * "_trace" element out of an array. A scalar's raise failed graphile-worker's failure statement, so
 * such a job's failed attempt could not be recorded at all. Now only an object loses its `_trace`,
 * as at completion (0021).
 */
const CHANGES: Array<[from: string, to: string]> = [
  ["       observing_jobs.storable_payload(job.payload)::jsonb - '_trace',\n", "       case when jsonb_typeof(p.payload) = 'object' then p.payload - '_trace' else p.payload end,\n"],
  ["     from graphile_worker._private_tasks t\n", "     from graphile_worker._private_tasks t\n     cross join lateral (select observing_jobs.storable_payload(job.payload) as payload) p\n"],
];

/** 0008's insert_missing_record, as `create or replace`. */
function previousDefinition(): string {
  const definition = RECORDING_FUNCTIONS.find((statement) => statement.startsWith("create function observing_jobs.insert_missing_record("));
  if (!definition || !CHANGES.every(([from]) => definition.includes(from))) throw new Error("0023: 0008's insert_missing_record is not the one this migration changes");
  return definition.replace("create function", "create or replace function");
}

export async function up(db: Kysely<unknown>): Promise<void> {
  let definition = previousDefinition();
  for (const [from, to] of CHANGES) definition = definition.replace(from, to);
  await sql.raw(definition).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(previousDefinition()).execute(db);
}
