/**
 * The crontab as operators see it: each entry's schedule and its next fire times (UTC), for the
 * API's task listing, the dashboard and metrics.
 */
import { createRequire } from "node:module";
import type * as CronParser from "cron-parser";
import type { CrontabEntry } from "./crontab.ts";

export interface Schedule {
  id: string;
  task: string;
  /** The five crontab time fields, in UTC. */
  expression: string;
  /** Missed runs within this many seconds are back-filled at start-up (0: none). */
  backfillSeconds: number;
  /** The payload the line gives the task (before graphile-worker adds `_cron`). */
  payload: unknown;
  nextRunAt: Date;
}

// Required on first use: cron-parser brings luxon (half a megabyte of source held in memory, ~30
// ms to load), and nothing on the way to ready needs a next fire time. graphile-worker parses the
// crontab itself.
const require = createRequire(import.meta.url);
let parser: typeof CronParser.CronExpressionParser | undefined;

function nextRunAfter(expression: string, after: Date): Date {
  parser ??= (require("cron-parser") as typeof CronParser).CronExpressionParser;
  return parser.parse(expression, { tz: "UTC", currentDate: after }).next().toDate();
}


export function describeSchedules(entries: readonly CrontabEntry[], now: Date = new Date()): Schedule[] {
  return entries.map(({ expression, item }) => ({
    id: item.identifier,
    task: item.task,
    expression,
    backfillSeconds: Math.round(item.options.backfillPeriod / 1000),
    payload: item.payload ?? {},
    nextRunAt: nextRunAfter(expression, now),
  }));
}
