/**
 * What readiness reports beyond "the database answers": whether this instance is shutting down,
 * whether every pool's LISTEN connection is up, whether the cron loop is alive, and whether the
 * heartbeats that keep the sweeper away are being written. All of it is state kept in memory from
 * graphile-worker's events, so `/readyz` stays cheap.
 */
import type { WorkerEvents } from "graphile-worker";

export interface Check {
  ok: boolean;
  detail?: string;
}

/** The runners as readiness sees them. */
export interface RunnerStates {
  runners: ReadonlyArray<{ name: string; poolId(): string | null; crashLoop(): string | null }>;
}

export interface ReadinessSignalsOptions {
  /** Number of crontab entries; with none there is no cron loop to watch. */
  cronItems: number;
  heartbeatIntervalMs: number;
  heartbeats: { lastWrittenAt(): number | null };
}

/** How long cron may be (re)starting or writing a tick before it counts as not alive. */
const CRON_STALL_MS = 15_000;

type CronPhase = "starting" | "backfilling" | "started" | "scheduling" | "scheduled";

export class ReadinessSignals {
  readonly #options: ReadinessSignalsOptions;
  readonly #listening = new Map<string, boolean>();
  #cron: { phase: CronPhase; at: number; wallClock: Date } | null = null;
  #shuttingDown = false;

  constructor(events: WorkerEvents, options: ReadinessSignalsOptions) {
    this.#options = options;
    events.on("pool:listen:success", ({ workerPool }) => this.#listening.set(workerPool.id, true));
    events.on("pool:listen:error", ({ workerPool }) => this.#listening.set(workerPool.id, false));
    events.on("pool:listen:release", ({ workerPool }) => this.#listening.set(workerPool.id, false));
    events.on("pool:release", ({ workerPool }) => this.#listening.delete(workerPool.id));
    const cronPhase = (phase: CronPhase) => () => (this.#cron = { phase, at: performance.now(), wallClock: new Date() });
    events.on("cron:starting", cronPhase("starting"));
    events.on("cron:backfill", cronPhase("backfilling"));
    events.on("cron:started", cronPhase("started"));
    events.on("cron:schedule", cronPhase("scheduling"));
    events.on("cron:scheduled", cronPhase("scheduled"));
  }

  /** From SIGTERM on, readiness is false whatever else holds. */
  beginShutdown(): void {
    this.#shuttingDown = true;
  }

  shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  checks(worker: RunnerStates): { listen: Check; cron: Check; heartbeat: Check; restarts: Check } {
    return { listen: this.#listen(worker), cron: this.#cronCheck(), heartbeat: this.#heartbeat(), restarts: this.#restarts(worker) };
  }

  /** A runner restarted after each crash is "up" between crashes; a crash loop still fails readiness. */
  #restarts(worker: RunnerStates): Check {
    const loops = worker.runners.map((runner) => runner.crashLoop()).filter((detail) => detail !== null);
    return loops.length === 0 ? { ok: true } : { ok: false, detail: loops.join("; ") };
  }

  #listen(worker: RunnerStates): Check {
    const down = worker.runners.filter((runner) => {
      const poolId = runner.poolId();
      return poolId === null || this.#listening.get(poolId) !== true;
    });
    if (down.length === 0) return { ok: true };
    return { ok: false, detail: `LISTEN not connected for runner ${down.map((runner) => `'${runner.name}'`).join(", ")}` };
  }

  #cronCheck(): Check {
    if (this.#options.cronItems === 0) return { ok: true, detail: "no schedule" };
    const cron = this.#cron;
    if (!cron) return { ok: false, detail: "cron has not started" };
    const since = `${cron.phase} at ${cron.wallClock.toISOString()}`;
    if (cron.phase === "started" || cron.phase === "scheduled") return { ok: true, detail: since };
    // Starting or writing a tick for long means it keeps failing and restarting (database away).
    const stalled = performance.now() - cron.at > CRON_STALL_MS;
    return stalled ? { ok: false, detail: `cron stuck: ${since}` } : { ok: true, detail: since };
  }

  #heartbeat(): Check {
    const written = this.#options.heartbeats.lastWrittenAt();
    if (written === null) return { ok: false, detail: "no heartbeat written yet" };
    const age = performance.now() - written;
    // One late beat is tolerated; two missed ones mean the sweeper will soon see this instance as dead.
    const limit = 2 * this.#options.heartbeatIntervalMs + 1000;
    const detail = `last written ${(age / 1000).toFixed(1)} s ago`;
    return age <= limit ? { ok: true, detail } : { ok: false, detail };
  }
}
