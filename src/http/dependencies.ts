/**
 * What the HTTP app and its routes and pages get from the running service. A leaf module, so the
 * route files import it rather than the app that registers them.
 */
import type pg from "pg";
import type { Config } from "../config.ts";
import type { CronFreshness } from "../cron/freshness.ts";
import type { CrontabEntry } from "../cron/crontab.ts";
import type { DashboardSources } from "./dashboard/sources.ts";
import type { Db } from "../db/database.ts";
import type { Pause } from "../db/repositories/pauses.ts";
import type { JobEndWaits } from "../lifecycle/job-end-waits.ts";
import type { QueueStats } from "../lifecycle/queue-stats.ts";
import type { Logger } from "../observability/logger.ts";
import type { ServiceMetrics } from "../observability/metrics.ts";
import type { TaskRegistry } from "../registry.ts";

/** What the routes need from the running service. */
export interface AppDependencies {
  config: Pick<Config, "auth" | "http"> & Partial<Pick<Config, "dashboard">>;
  logger: Logger;
  pool: pg.Pool;
  db: Db;
  registry: TaskRegistry;
  crontab: readonly CrontabEntry[];
  queueStats: QueueStats;
  cronFreshness: CronFreshness;
  metrics: ServiceMetrics;
  worker: { isRunning(): boolean };
  /** Live worker pools and overdue cron entries for the dashboard; shown as not available when absent. */
  dashboardSources?: DashboardSources;
  /** Waits for jobs' ends (`?wait=`); the jobs routes open their own when absent (and close it with the app). */
  jobEnds?: JobEndWaits;
  /** Shutdown state and worker health beyond the database (src/reliability/readiness.ts); reported when given. */
  reliability?: ReliabilityProbe;
  /** What this instance's runners honour as paused now (src/worker/pause-gate.ts); readiness reports it. */
  pauses?: { current(): readonly Pause[] };
}

export interface ReliabilityProbe {
  shuttingDown(): boolean;
  checks(): Record<"listen" | "cron" | "heartbeat" | "restarts", { ok: boolean; detail?: string }>;
}
