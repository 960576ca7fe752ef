/**
 * Cron freshness: for each crontab entry, when its job last ran and last succeeded (from
 * observing_jobs.cron_runs, which the recording triggers keep and retention never prunes), and
 * whether that success is older than the staleness the entry declares (`stale=` on its crontab line). Read by /metrics, the API's task listing, readiness detail and the dashboard (overview and tasks pages);
 * cached, so however often they ask, the database sees one small query per interval.
 */
import type { CrontabEntry } from "./crontab.ts";
import { cachedRead } from "../db/cached-read.ts";
import type { Db } from "../db/database.ts";
import { findCronRunTimes, type CronRunTimes } from "../db/repositories/job-records.ts";

export interface CronStatus {
  id: string;
  task: string;
  /** How stale the last success may get, from `stale=`; null when the entry declares none. */
  maxStalenessSeconds: number | null;
  lastRunAt: Date | null;
  /** The job of the last run and of the last success (the dashboard links them). */
  lastRunJobId: string | null;
  lastSuccessAt: Date | null;
  lastSuccessJobId: string | null;
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
  const read = cachedRead(async () => {
    const times = await findCronRunTimes(db, entries.map((entry) => ({ task: entry.item.task, payload: entry.item.payload ?? {} })));
    return entries.map((entry, index) => statusOf(entry, times[index], startedAt));
  }, options.maxAgeMs ?? 15_000);
  return { read };
}

function statusOf(entry: CrontabEntry, times: CronRunTimes | undefined, startedAt: Date): CronStatus {
  const lastRunAt = times?.lastRunAt ?? null;
  const lastSuccessAt = times?.lastSuccessAt ?? null;
  const maxStalenessSeconds = entry.maxStalenessMs === null ? null : Math.round(entry.maxStalenessMs / 1000);
  const since = lastSuccessAt ?? startedAt;
  const overdueSince = entry.maxStalenessMs === null ? null : new Date(since.getTime() + entry.maxStalenessMs);
  const overdue = overdueSince !== null && Date.now() > overdueSince.getTime();
  return {
    id: entry.item.identifier,
    task: entry.item.task,
    maxStalenessSeconds,
    lastRunAt,
    lastRunJobId: times?.lastRunJobId ?? null,
    lastSuccessAt,
    lastSuccessJobId: times?.lastSuccessJobId ?? null,
    overdue,
    overdueSince: overdue ? overdueSince : null,
  };
}
