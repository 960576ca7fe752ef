/**
 * Prometheus metrics for `GET /metrics`. Job counters and durations are counted in-process as
 * attempts happen; queue depth, lag and cron freshness are read at scrape time from sources that
 * cache their database reads, so a scrape never scans the jobs table by itself.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { QueueStats } from "../lifecycle/queue-stats.ts";
import type { AttemptObserver, JobSnapshot } from "../worker/attempt.ts";
import type { CronFreshness } from "../cron/freshness.ts";
import type { GlobalCapUsage } from "../db/repositories/global-caps.ts";
import type { Pause } from "../db/repositories/pauses.ts";
import { pauseHolding } from "../lifecycle/pauses.ts";
import type { TaskRegistry } from "../registry.ts";

const PREFIX = "observing_jobs_";

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

    new Gauge({
      name: `${PREFIX}queue_jobs`,
      help: "Jobs in graphile-worker's table, by task, queue and state (refreshed at most every few seconds).",
      labelNames: ["task", "queue", "state"] as const,
      registers,
      async collect() {
        const { depths } = await sources.queueStats.read();
        this.reset();
        for (const row of depths) {
          const labels = { task: row.task, queue: row.queue ?? "" };
          for (const [state, value] of [["ready", row.ready], ["scheduled", row.scheduled], ["running", row.running], ["retry_wait", row.retryWait], ["dead", row.dead]] as const) {
            this.set({ ...labels, state }, value);
          }
        }
      },
    });
    new Gauge({
      name: `${PREFIX}queue_oldest_ready_age_seconds`,
      help: "How long the oldest ready job has waited past its run time (0 when none is ready), by task and queue.",
      labelNames: ["task", "queue"] as const,
      registers,
      async collect() {
        const { depths } = await sources.queueStats.read();
        this.reset();
        for (const row of depths) this.set({ task: row.task, queue: row.queue ?? "" }, row.oldestReadyAgeSeconds ?? 0);
      },
    });
    new Gauge({
      name: `${PREFIX}cron_last_success_timestamp_seconds`,
      help: "When each crontab entry's job last succeeded (Unix time; absent when never).",
      labelNames: ["schedule", "task"] as const,
      registers,
      async collect() {
        this.reset();
        for (const entry of await sources.cronFreshness.read()) {
          if (entry.lastSuccessAt) this.set({ schedule: entry.id, task: entry.task }, entry.lastSuccessAt.getTime() / 1000);
        }
      },
    });
    new Gauge({
      name: `${PREFIX}cron_overdue`,
      help: "1 when a crontab entry's last success is older than the staleness it declares (stale=), else 0.",
      labelNames: ["schedule", "task"] as const,
      registers,
      async collect() {
        this.reset();
        for (const entry of await sources.cronFreshness.read()) this.set({ schedule: entry.id, task: entry.task }, entry.overdue ? 1 : 0);
      },
    });
    const { pauses, registry } = sources;
    if (pauses && registry) {
      new Gauge({
        name: `${PREFIX}queue_paused`,
        help: "1 when the jobs of a task and queue are held back by a pause (the task's, its cap group's or the queue's), else 0; alerts on lag skip those.",
        labelNames: ["task", "queue"] as const,
        registers,
        async collect() {
          const [{ depths }, paused] = await Promise.all([sources.queueStats.read(), pauses()]);
          this.reset();
          for (const row of depths) {
            const task = registry.find(row.task);
            const held = task ? pauseHolding(paused, task, row.queue) : paused.some((pause) => pause.kind === "queue" && pause.name === row.queue);
            this.set({ task: row.task, queue: row.queue ?? "" }, held ? 1 : 0);
          }
        },
      });
    }
    if (pauses) {
      new Gauge({
        name: `${PREFIX}paused`,
        help: "1 for each task, named queue or cap group paused now (its new attempts do not start; its jobs wait), by kind and name.",
        labelNames: ["kind", "name"] as const,
        registers,
        async collect() {
          const paused = await pauses();
          this.reset();
          for (const pause of paused) this.set({ kind: pause.kind, name: pause.name }, 1);
        },
      });
    }
    const { workerPools } = sources;
    if (workerPools) {
      new Gauge({
        name: `${PREFIX}worker_pools`,
        help: "Worker pools of every instance by heartbeat status: live, or ended in the last hour as stopped (clean) or dead (rescued).",
        labelNames: ["status"] as const,
        registers,
        async collect() {
          const pools = await workerPools();
          this.reset();
          for (const status of ["live", "stopped", "dead"]) this.set({ status }, pools.filter((pool) => pool.status === status).length);
        },
      });
    }
    const { globalCaps } = sources;
    if (globalCaps) {
      new Gauge({
        name: `${PREFIX}global_cap_slots`,
        help: "Jobs a global concurrency cap lets run at once across every instance.",
        labelNames: ["group"] as const,
        registers,
        async collect() {
          this.reset();
          for (const cap of await globalCaps()) this.set({ group: cap.group }, cap.slots);
        },
      });
      new Gauge({
        name: `${PREFIX}global_cap_slots_in_use`,
        help: "Slots of a global concurrency cap held by running attempts, on any instance (a killed instance's until the rescue).",
        labelNames: ["group"] as const,
        registers,
        async collect() {
          this.reset();
          for (const cap of await globalCaps()) this.set({ group: cap.group }, cap.inUse);
        },
      });
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
