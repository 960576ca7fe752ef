/**
 * Cron freshness: for each crontab entry, when its job last ran and last succeeded (from job
 * history), and whether that success is older than the staleness the entry declares (`stale=` on
 * its crontab line). Read by /metrics, the API's task listing, readiness detail and the dashboard;
 * cached, so however often they ask, the database sees one small query per entry per interval.
 */
import { sql } from "kysely";
import type { CrontabEntry } from "./crontab.ts";
import { cachedRead } from "../db/cached-read.ts";
import type { Db } from "../db/database.ts";

export interface CronStatus {
  id: string;
  task: string;
  /** How stale the last success may get, from `stale=`; null when the entry declares none. */
  maxStalenessSeconds: number | null;
  lastRunAt: Date | null;
  lastSuccessAt: Date | null;
  /** True when a declared staleness is exceeded (counted from start-up when it never succeeded). */
  overdue: boolean;
  /** When the entry became overdue (its last success, or start-up, plus its staleness); null when not overdue. */
  overdueSince: Date | null;
}

export interface CronFreshness {
  read(): Promise<CronStatus[]>;
}

export function makeCronFreshness(db: Db, entries: readonly CrontabEntry[], options: { startedAt?: Date; maxAgeMs?: number } = {}): CronFreshness {
  const startedAt = options.startedAt ?? new Date();
  const read = cachedRead(() => Promise.all(entries.map((entry) => statusOf(db, entry, startedAt))), options.maxAgeMs ?? 15_000);
  return { read };
}

async function statusOf(db: Db, entry: CrontabEntry, startedAt: Date): Promise<CronStatus> {
  // The entry's jobs are the task's cron-fired jobs with the entry's payload (graphile-worker adds
  // only `_cron`); newest first through the (task, id desc) index.
  const payload = JSON.stringify(entry.item.payload ?? {});
  const { rows } = await sql<{ last_run_at: Date | null; last_success_at: Date | null }>`
    select
      (select created_at from observing_jobs.job_records
        where task = ${entry.item.task} and source = 'cron' and (payload - '_cron') = ${payload}::jsonb
        order by id desc limit 1) as last_run_at,
      (select finished_at from observing_jobs.job_records
        where task = ${entry.item.task} and source = 'cron' and phase = 'succeeded' and (payload - '_cron') = ${payload}::jsonb
        order by id desc limit 1) as last_success_at`.execute(db);
  const { last_run_at: lastRunAt, last_success_at: lastSuccessAt } = rows[0]!;
  const maxStalenessSeconds = entry.maxStalenessMs === null ? null : Math.round(entry.maxStalenessMs / 1000);
  const since = lastSuccessAt ?? startedAt;
  const overdueSince = entry.maxStalenessMs === null ? null : new Date(since.getTime() + entry.maxStalenessMs);
  const overdue = overdueSince !== null && Date.now() > overdueSince.getTime();
  return {
    id: entry.item.identifier,
    task: entry.item.task,
    maxStalenessSeconds,
    lastRunAt,
    lastSuccessAt,
    overdue,
    overdueSince: overdue ? overdueSince : null,
  };
}
