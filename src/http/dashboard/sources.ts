/**
 * What the dashboard reads from parts of the service it does not own: live worker pools (the
 * heartbeats). The composition root passes them in; a source that is absent is shown as "not
 * available", never as an empty (and so reassuring) list. (Cron status is the one cron-freshness
 * source every other surface reads too: `AppDependencies.cronFreshness`.)
 */
import type { Logger } from "../../observability/logger.ts";

export interface WorkerPoolStatus {
  /** The pool's id: what graphile-worker writes into `locked_by` of the jobs it runs. */
  id: string;
  /** The service process (or Cloud Run instance) running the pool. */
  instance: string;
  /** The runner the pool belongs to ("main" or a concurrency-cap group), when known. */
  runner?: string;
  lastSeen: Date;
  /** e.g. live, stopped, dead. Shown as text; "live" counts as healthy. */
  status: string;
}

export interface DashboardSources {
  /** Worker pools with a recent heartbeat (live ones first). */
  workerPools?: () => Promise<WorkerPoolStatus[]>;
}

/** What a source said, or why there is nothing to show. */
export type SourceReading<T> = { available: true; items: T[] } | { available: false; reason: string };

/** Reads a source; a failure is logged and shown as "could not be read", never as an empty list. */
export async function readSource<T>(source: (() => Promise<T[]>) | undefined, logger: Logger): Promise<SourceReading<T>> {
  if (!source) return { available: false, reason: "not available: this service does not report it yet" };
  try {
    return { available: true, items: await source() };
  } catch (error) {
    // The page says something is wrong; the details (SQL, hosts) stay in the logs.
    logger.warn({ err: error }, "dashboard source failed");
    return { available: false, reason: "could not be read just now (see the service logs)" };
  }
}
