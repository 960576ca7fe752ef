/**
 * Prometheus metrics for `GET /metrics`. Job counters and durations are counted in-process as
 * attempts happen; queue depth, lag and cron freshness are read at scrape time from sources that
 * cache their database reads, so a scrape never scans the jobs table by itself.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { QueueDepth, QueueStats } from "../lifecycle/queue-stats.ts";
import type { AttemptObserver, JobSnapshot } from "../worker/attempt.ts";
import type { CronFreshness } from "../cron/freshness.ts";
import type { GlobalCapUsage } from "../db/repositories/global-caps.ts";
import type { Pause } from "../db/repositories/pauses.ts";
import { pauseHolding } from "../lifecycle/pauses.ts";
import type { TaskRegistry } from "../registry.ts";

const PREFIX = "observing_jobs_";

/** One value of a gauge and its labels. */
type Sample<L extends string> = [labels: Partial<Record<L, string>>, value: number];

export interface MetricSources {
  queueStats: QueueStats;
  cronFreshness: CronFreshness;
  /** Worker pools (all instances) by their heartbeat status; absent where heartbeats are not written. */
  workerPools?: () => Promise<Array<{ status: string }>>;
  /** Global concurrency caps (all instances) with their slots in use; absent where the service's runners do not run. */
  globalCaps?: () => Promise<GlobalCapUsage[]>;
  /** What is paused now (src/lifecycle/pauses.ts); absent where pauses are not read. */
  pauses?: () => Promise<Pause[]>;
  /** The tasks, to tell which queue rows a pause holds (a cap group's pause holds its tasks'); with `pauses`. */
  registry?: TaskRegistry;
}

export class ServiceMetrics implements AttemptObserver {
  readonly registry = new Registry();
  readonly #started: Counter<"task">;
  readonly #succeeded: Counter<"task">;
  readonly #failed: Counter<"task">;
  readonly #exhausted: Counter<"task">;
  readonly #abandoned: Counter<"task">;
  readonly #deferred: Counter<"task">;
  readonly #duration: Histogram<"task" | "outcome">;
  /** Jobs of crashed workers released for another worker (crash recovery). */
  readonly rescued: Counter;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    // prom-client names these gauges *_total, which Prometheus reserves for counters (promtool
    // rejects them); the process and event-loop metrics that remain say the same and more.
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
      this.registry.removeSingleMetric(`${PREFIX}${name}`);
    }
    const counter = (name: string, help: string) => new Counter({ name: `${PREFIX}${name}`, help, labelNames: ["task"] as const, registers });
    this.#started = counter("jobs_started_total", "Job attempts started, by task.");
    this.#succeeded = counter("jobs_succeeded_total", "Job attempts that succeeded, by task.");
    this.#failed = counter("jobs_failed_total", "Job attempts that failed (and will be retried, or are exhausted), by task.");
    this.#exhausted = counter("jobs_exhausted_total", "Jobs that used all their attempts and are now dead, by task.");
    this.#abandoned = counter(
      "jobs_abandoned_total",
      "Attempts whose worker pool was declared dead while they ran (the job ran again elsewhere: at-least-once), by task.",
    );
    this.#deferred = counter(
      "jobs_deferred_total",
      "Attempts deferred because an upstream asked to wait (Retry-After), or not started because a pause arrived after the fetch (the attempt is given back), by task.",
    );
    this.#duration = new Histogram({
      name: `${PREFIX}job_duration_seconds`,
      help: "Duration of job attempts, by task and outcome.",
      labelNames: ["task", "outcome"] as const,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.rescued = new Counter({ name: `${PREFIX}rescued_jobs_total`, help: "Jobs of dead workers released for another worker.", registers });

    /** A gauge read at scrape time: each scrape's samples replace the last one's, so a label set that is gone disappears. */
    const scraped = <L extends string>(name: string, help: string, labelNames: readonly L[], read: () => Promise<Array<Sample<L>>>) =>
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        labelNames,
        registers,
        async collect() {
          const samples = await read();
          this.reset();
          for (const [labels, value] of samples) this.set(labels, value);
        },
      });
    const depths = async () => (await sources.queueStats.read()).depths;
    const queueLabels = (row: QueueDepth) => ({ task: row.task, queue: row.queue ?? "" });

    scraped("queue_jobs", "Jobs in graphile-worker's table, by task, queue and state (refreshed at most every few seconds).", ["task", "queue", "state"], async () =>
      (await depths()).flatMap((row) =>
        ([["ready", row.ready], ["scheduled", row.scheduled], ["running", row.running], ["retry_wait", row.retryWait], ["dead", row.dead]] as const).map(
          ([state, value]): Sample<"task" | "queue" | "state"> => [{ ...queueLabels(row), state }, value],
        ),
      ),
    );
    scraped(
      "queue_oldest_ready_age_seconds",
      "How long the oldest ready job has waited past its run time (0 when none is ready), by task and queue.",
      ["task", "queue"],
      async () => (await depths()).map((row) => [queueLabels(row), row.oldestReadyAgeSeconds ?? 0]),
    );
    scraped("cron_last_success_timestamp_seconds", "When each crontab entry's job last succeeded (Unix time; absent when never).", ["schedule", "task"], async () =>
      (await sources.cronFreshness.read()).flatMap((entry) =>
        entry.lastSuccessAt ? [[{ schedule: entry.id, task: entry.task }, entry.lastSuccessAt.getTime() / 1000] as Sample<"schedule" | "task">] : [],
      ),
    );
    scraped("cron_overdue", "1 when a crontab entry's last success is older than the staleness it declares (stale=), else 0.", ["schedule", "task"], async () =>
      (await sources.cronFreshness.read()).map((entry) => [{ schedule: entry.id, task: entry.task }, entry.overdue ? 1 : 0]),
    );
    const { pauses, registry, workerPools, globalCaps } = sources;
    if (pauses && registry) {
      scraped(
        "queue_paused",
        "1 when the jobs of a task and queue are held back by a pause (the task's, its cap group's or the queue's), else 0; alerts on lag skip those.",
        ["task", "queue"],
        async () => {
          const [rows, paused] = await Promise.all([depths(), pauses()]);
          return rows.map((row) => {
            const task = registry.find(row.task);
            const held = task ? pauseHolding(paused, task, row.queue) : paused.some((pause) => pause.kind === "queue" && pause.name === row.queue);
            return [queueLabels(row), held ? 1 : 0];
          });
        },
      );
    }
    if (pauses) {
      scraped("paused", "1 for each task, named queue or cap group paused now (its new attempts do not start; its jobs wait), by kind and name.", ["kind", "name"], async () =>
        (await pauses()).map((pause) => [{ kind: pause.kind, name: pause.name }, 1]),
      );
    }
    if (workerPools) {
      scraped(
        "worker_pools",
        "Worker pools of every instance by heartbeat status: live, or ended in the last hour as stopped (clean) or dead (rescued).",
        ["status"],
        async () => {
          const pools = await workerPools();
          return ["live", "stopped", "dead"].map((status) => [{ status }, pools.filter((pool) => pool.status === status).length]);
        },
      );
    }
    if (globalCaps) {
      scraped("global_cap_slots", "Jobs a global concurrency cap lets run at once across every instance.", ["group"], async () =>
        (await globalCaps()).map((cap) => [{ group: cap.group }, cap.slots]),
      );
      scraped(
        "global_cap_slots_in_use",
        "Slots of a global concurrency cap held by running attempts, on any instance (a killed instance's until the rescue).",
        ["group"],
        async () => (await globalCaps()).map((cap) => [{ group: cap.group }, cap.inUse]),
      );
    }
  }

  started(job: JobSnapshot): void {
    this.#started.inc({ task: job.task });
  }

  succeeded(job: JobSnapshot, durationMs: number): void {
    this.#succeeded.inc({ task: job.task });
    this.#duration.observe({ task: job.task, outcome: "succeeded" }, durationMs / 1000);
  }

  failed(job: JobSnapshot, _error: unknown, durationMs: number): void {
    this.#failed.inc({ task: job.task });
    const exhausted = job.attempt >= job.maxAttempts;
    if (exhausted) this.#exhausted.inc({ task: job.task });
    this.#duration.observe({ task: job.task, outcome: exhausted ? "exhausted" : "failed" }, durationMs / 1000);
  }

  hookFailed(): void {}

  abandoned(job: JobSnapshot, _reason: string, durationMs: number): void {
    this.#abandoned.inc({ task: job.task });
    this.#duration.observe({ task: job.task, outcome: "abandoned" }, durationMs / 1000);
  }

  deferred(job: JobSnapshot, _error: unknown, durationMs: number): void {
    this.#deferred.inc({ task: job.task });
    this.#duration.observe({ task: job.task, outcome: "deferred" }, durationMs / 1000);
  }
}
