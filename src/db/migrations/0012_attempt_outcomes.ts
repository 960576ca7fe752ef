import { sql, type Kysely } from "kysely";
import { JOB_EVENTS_EVENT_CHECK, RECORDING_FUNCTIONS } from "./0008_job_records_v2.ts";

/**
 * Frozen in time. One more event in job history, `deferred` (an upstream asked to wait with
 * Retry-After; the job waits until `run_at` with the attempt given back; `abandoned` came with
 * 0008). And the history copy of a payload added by plain SQL keeps its text when it holds a lone
 * surrogate escape (json accepts `\ud83d` alone, jsonb does not): 0008's storable_payload dropped
 * NUL escapes only and kept such a payload as null; now lone surrogates become U+FFFD, as
 * src/storable-text.ts does for everything the service stores itself.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // 0008's fillfactor 50 left room for one update per row when rows end one statement at a time,
  // but a batched completion grows a whole page's records (started_at, finished_at, worker_id) in
  // one transaction, before any old version can be pruned: measured, 446 of 600 such updates were
  // HOT at 50. At 40 a page of the smallest records, all grown at once, still fits.
  await sql`alter table observing_jobs.job_records set (fillfactor = 40)`.execute(db);
  await sql`alter table observing_jobs.job_events drop constraint job_events_event_check`.execute(db);
  await sql`
    alter table observing_jobs.job_events add constraint job_events_event_check check (event in (
      'enqueued', 'started', 'succeeded', 'failed', 'exhausted', 'hook_failed',
      'retried', 'cancelled', 'discarded', 'rescued', 'abandoned', 'deferred'
    ))`.execute(db);
  // An escaped backslash before "u0000" or "ud83d" is rare enough that losing its pair is
  // acceptable in a history copy (graphile-worker's own row keeps the payload as it was).
  await sql.raw(String.raw`
    create or replace function observing_jobs.storable_payload(payload json) returns jsonb
    language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
    begin
      return payload::jsonb;
    exception when others then
      begin
        return regexp_replace(
          regexp_replace(replace(payload::text, '\u0000', ''),
            '\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})', '\\ufffd', 'g'),
          '(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}', '\\ufffd', 'g')::jsonb;
      exception when others then
        return null;
      end;
    end $$`).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table observing_jobs.job_records set (fillfactor = 50)`.execute(db);
  // 0008's text exactly. This down used to run a re-indented copy without 0008's comments: the same
  // function, but pg_proc kept another body than the one 0008 had created.
  await sql.raw(previousStorablePayload()).execute(db);
  await sql`alter table observing_jobs.job_events drop constraint job_events_event_check`.execute(db);
  await sql.raw(JOB_EVENTS_EVENT_CHECK).execute(db);
}

/** 0008's storable_payload, as `create or replace`. */
function previousStorablePayload(): string {
  const definition = RECORDING_FUNCTIONS.find((statement) => statement.startsWith("create function observing_jobs.storable_payload(payload json)"));
  if (!definition) throw new Error("0012: 0008 has no storable_payload");
  return definition.replace("create function", "create or replace function");
}
