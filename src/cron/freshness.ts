/**
 * Cron freshness: for each crontab entry, when its job last ran and last succeeded (from
 * observing_jobs.cron_runs, which the recording triggers keep and retention never prunes), and
 * whether that success is older than the staleness the entry declares (`stale=` on its crontab line). Read by /metrics, the API's task listing, readiness detail and the dashboard (overview and tasks pages);
 * cached, so however often they ask, the database sees one small query per interval.
 *
 * An entry whose job is paused (its task, cap group or queue: src/lifecycle/pauses.ts) is not
 * overdue while the pause lasts: it says `paused` instead, so an alert on overdue entries does not
 * fire for what an operator stopped on purpose. Once resumed, it is overdue again if its last
 * success is older than its staleness.
 */
import type { CrontabEntry } from "./crontab.ts";
import { cachedRead } from "../db/cached-read.ts";
import type { Db } from "../db/database.ts";
import { findCronRunTimes, type CronRunTimes } from "../db/repositories/job-records.ts";
import { findPauses } from "../db/repositories/pauses.ts";
import { pauseHolding } from "../lifecycle/pauses.ts";
import type { TaskRegistry } from "../registry.ts";

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
  /** True when a declared staleness is exceeded (counted from start-up when it never succeeded), and the entry's job is not paused. */
  overdue: boolean;
  /** The entry's job is paused (by its task, cap group or queue): never overdue meanwhile. */
  paused: boolean;
  /** When the entry became overdue (its last success, or start-up, plus its staleness); null when not overdue. */
  overdueSince: Date | null;
}

export interface CronFreshness {
  read(): Promise<CronStatus[]>;
}

/** `registry`: the tasks, to tell which entries are paused; without it none is. */
export function makeCronFreshness(db: Db, entries: readonly CrontabEntry[], options: { startedAt?: Date; maxAgeMs?: number; registry?: TaskRegistry } = {}): CronFreshness {
  const startedAt = options.startedAt ?? new Date();
  const { registry } = options;
  const read = cachedRead(async () => {
    const [times, pauses] = await Promise.all([
      findCronRunTimes(db, entries.map((entry) => ({ task: entry.item.task, payload: entry.item.payload ?? {} }))),
      registry && entries.length > 0 ? findPauses(db) : [],
    ]);
    return entries.map((entry, index) => {
      const task = registry?.find(entry.item.task);
      const paused = !!task && !!pauseHolding(pauses, task, entry.item.options.queueName ?? task.defaults.queueName);
      return statusOf(entry, times[index], startedAt, paused);
    });
  }, options.maxAgeMs ?? 15_000);
  return { read };
}

function statusOf(entry: CrontabEntry, times: CronRunTimes | undefined, startedAt: Date, paused: boolean): CronStatus {
  const lastRunAt = times?.lastRunAt ?? null;
  const lastSuccessAt = times?.lastSuccessAt ?? null;
  const maxStalenessSeconds = entry.maxStalenessMs === null ? null : Math.round(entry.maxStalenessMs / 1000);
  const since = lastSuccessAt ?? startedAt;
  const overdueSince = entry.maxStalenessMs === null ? null : new Date(since.getTime() + entry.maxStalenessMs);
  const overdue = !paused && overdueSince !== null && Date.now() > overdueSince.getTime();
  return {
    id: entry.item.identifier,
    task: entry.item.task,
    maxStalenessSeconds,
    lastRunAt,
    lastRunJobId: times?.lastRunJobId ?? null,
    lastSuccessAt,
    lastSuccessJobId: times?.lastSuccessJobId ?? null,
    overdue,
    paused,
    overdueSince: overdue ? overdueSince : null,
  };
}
