/**
 * How the runners honour pauses (src/lifecycle/pauses.ts says what a pause holds back).
 *
 * Every job carries flags naming its task and named queue (migration 0017_pauses), and each runner
 * hands graphile-worker a `forbiddenFlags` function, called before every fetch: the flags of what is
 * paused and concerns that runner, so its fetch skips those jobs and they wait, unlocked, in the table.
 * The function returns null (not []) while nothing concerning the runner is paused: with any array
 * graphile-worker's local queue is bypassed, one fetch per job, so an empty one would turn the main
 * runner's batching off for nothing.
 *
 * Which pauses concern a runner: its tasks' own and their cap groups', and the queues its jobs may
 * be in, which are its tasks' default queues plus every queue it has seen a job of (a job can be
 * enqueued into any queue). A job in a paused queue that the runner had not seen yet is caught when
 * its attempt would start (below), after which the queue is forbidden too.
 *
 * What is paused is read from `observing_jobs.pauses` at start (before any runner fetches), again on
 * every `observing_jobs:pauses` notification (the table's trigger sends one on any change), and every
 * `pollIntervalMs` whatever happens, so a notification lost while LISTEN reconnected is made up for
 * within that. When a change frees jobs a runner skipped, this process's workers are nudged (every
 * instance hears the notification and nudges its own), so a resume starts them at once instead of
 * at their next poll.
 *
 * The main runner's local queue: graphile-worker's workers bypass it while their forbidden flags are
 * non-null (one fetch per job, with the flags), but the local queue itself still fetches batches
 * without any flags, and jobs it holds then wait, locked, until its TTL (5 minutes) or the resume.
 * So while a pause concerns the main runner its local queue is kept idle: whenever it holds jobs
 * (WAITING), they are returned to the database at once (graphile-worker's own TTL expiry, early:
 * unlocked, their attempt given back), and it stays idle until a worker asks it for a job again,
 * which happens once the flags are null (the resume). Cost while paused: the main runner fetches one
 * job per free slot, as with WORKER_LOCAL_QUEUE_SIZE=0, plus at most one wasted batch per fetch the
 * local queue makes before it is idle (at start, or when a pause lands).
 *
 * A job fetched before the pause reached this instance (between fetch and start, or handed out by
 * the local queue to a worker that was waiting for one) must not start either: each attempt asks
 * `holdIfPaused` first, and a held job is given back to the queue with its attempt unspent (deferJob:
 * fenced by locked_by, its run_at kept) and a `deferred` event saying which pause held it.
 */
import type { WorkerEventMap, WorkerEvents } from "graphile-worker";
import type pg from "pg";
import type { Db } from "../db/database.ts";
import { findPauses } from "../db/repositories/pauses.ts";
import { AttemptHistory } from "../lifecycle/history.ts";
import { describePause, pauseHolding, type Pause } from "../lifecycle/pauses.ts";
import type { Logger } from "../observability/logger.ts";
import type { RegisteredTask } from "../registry.ts";
import type { AttemptObserver, JobSnapshot } from "./attempt.ts";
import { deferJob, type HeldJob } from "./job-control.ts";

/** The channel the pauses table's trigger notifies (migration 0017_pauses). */
const PAUSES_CHANNEL = "observing_jobs:pauses";
/** How often every instance re-reads the pauses whatever it was told. @defaultValue 2000 */
export const PAUSE_POLL_INTERVAL_MS = 2000;

/** graphile-worker's local queue as its events hand it over (the class itself is not exported). */
type LocalQueue = WorkerEventMap["localQueue:init"]["localQueue"];
type GraphileWorkerWorker = WorkerEventMap["worker:create"]["worker"];

/** The runner planRunners names for the uncapped tasks: the only one with a local queue. */
const MAIN_RUNNER = "main";

/** A job's flag for its task, as the trigger of migration 0017_pauses writes it. */
const taskFlag = (task: string) => `pause:task:${task}`;
/** A job's flag for its named queue. */
const queueFlag = (queue: string) => `pause:queue:${queue}`;

/** An attempt that did not start: what it belongs to is paused. Not the job's failure: its attempt is given back. */
export class JobPausedError extends Error {
  override name = "JobPausedError";
  constructor(pause: Pause) {
    super(`not started: ${describePause(pause)}; the job waits, its attempt not spent`);
  }
}

export interface PauseWatcherOptions {
  db: Db;
  /** One connection of it LISTENs for changes; without it, polling only. */
  listenPool?: pg.Pool;
  logger: Logger;
  /** The runners' emitter: the main runner's local queue is found through it. */
  events?: WorkerEvents;
  /** @defaultValue PAUSE_POLL_INTERVAL_MS */
  pollIntervalMs?: number;
}

/** Keeps this instance's view of what is paused, and gives each runner its gate. */
export class PauseWatcher {
  readonly #options: PauseWatcherOptions;
  readonly #logger: Logger;
  #pauses: readonly Pause[] = [];
  #signature = "";
  readonly #gates = new Set<RunnerPauseGate>();
  readonly #localQueues = new Set<LocalQueue>();
  readonly #workers = new Set<GraphileWorkerWorker>();
  #listener: pg.PoolClient | null = null;
  #timer: NodeJS.Timeout | null = null;
  #reading: Promise<void> | null = null;
  #readAgain = false;
  #stopped = false;

  constructor(options: PauseWatcherOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: "pauses" });
    const { events } = options;
    events?.on("localQueue:init", ({ localQueue }) => this.#localQueues.add(localQueue));
    events?.on("localQueue:setMode", ({ localQueue, newMode }) => {
      if (newMode === "RELEASED") this.#localQueues.delete(localQueue);
      // Set just before its TTL timer: returned once this event's caller is done.
      if (newMode === "WAITING" && this.#mainPaused()) setImmediate(() => this.#returnLocalQueue(localQueue));
    });
    events?.on("worker:create", ({ worker }) => this.#workers.add(worker));
    events?.on("worker:release", ({ worker }) => this.#workers.delete(worker));
  }

  /** Reads the pauses (a failure here fails the start: runners must not fetch without them), then listens and polls. */
  async start(): Promise<void> {
    await this.#apply(await findPauses(this.#options.db));
    await this.#listen();
    this.#schedule();
  }

  /** What is paused, as last read. */
  current(): readonly Pause[] {
    return this.#pauses;
  }

  /** The gate of one runner: its `forbiddenFlags` and the check before each attempt. */
  gate(runner: string, tasks: readonly RegisteredTask[]): RunnerPauseGate {
    const gate = new RunnerPauseGate(this, runner, tasks);
    this.#gates.add(gate);
    return gate;
  }

  /** Reads the pauses now (coalesced: a read asked for during one runs once after it). */
  refresh(): Promise<void> {
    if (this.#reading) {
      this.#readAgain = true;
      return this.#reading;
    }
    this.#reading = (async () => {
      try {
        do {
          this.#readAgain = false;
          await this.#apply(await findPauses(this.#options.db));
        } while (this.#readAgain && !this.#stopped);
      } catch (error) {
        this.#logger.warn({ err: error }, "could not read the pauses; keeping the last ones read until the next try");
      } finally {
        this.#reading = null;
      }
    })();
    return this.#reading;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const listener = this.#listener;
    this.#listener = null;
    listener?.release(true);
    await this.#reading;
  }

  async #apply(pauses: Pause[]): Promise<void> {
    const signature = JSON.stringify(pauses);
    if (signature === this.#signature) return;
    this.#signature = signature;
    this.#pauses = pauses;
    this.#logger.info({ paused: pauses.map((pause) => `${pause.kind}:${pause.name}`) }, "pauses changed");
    this.#recompute();
  }

  /** Recomputes every gate's flags; nudges the workers when something they skipped may run now. */
  #recompute(): void {
    let freed = false;
    for (const gate of this.#gates) {
      const { before, after } = gate.recompute();
      if (before.some((flag) => !after.includes(flag))) freed = true;
    }
    this.gateChanged();
    if (freed) this.#nudgeWorkers();
  }

  /** After a gate's flags changed: while a pause concerns the main runner, its local queues hold no jobs. */
  gateChanged(): void {
    if (this.#mainPaused()) for (const localQueue of this.#localQueues) this.#returnLocalQueue(localQueue);
  }

  /** Whether a pause concerns the main runner (the one runner with a local queue). */
  #mainPaused(): boolean {
    return [...this.#gates].some((gate) => gate.runner === MAIN_RUNNER && gate.forbiddenFlags() !== null);
  }

  /** Idle workers fetch now (graphile-worker's Worker.nudge), with the flags just recomputed. */
  #nudgeWorkers(): void {
    for (const worker of this.#workers) {
      try {
        worker.nudge();
      } catch {
        this.#workers.delete(worker); // released meanwhile
      }
    }
  }

  /**
   * Returns the jobs a local queue holds to the database (graphile-worker's TTL expiry, early): they
   * go back unlocked with their attempt given back, and the queue stays idle until a worker asks it
   * for a job. Only a queue WAITING holds jobs. `setModeTtlExpired` is not public API: pinned by
   * test/worker/pauses.test.ts, and without it the jobs wait until the TTL as graphile-worker has it.
   */
  #returnLocalQueue(localQueue: LocalQueue): void {
    if (localQueue.mode !== "WAITING") return;
    const expire = (localQueue as unknown as { setModeTtlExpired?: () => void }).setModeTtlExpired;
    if (typeof expire !== "function") {
      this.#logger.warn("this graphile-worker's local queue cannot be emptied early; its jobs wait until its TTL or the resume");
      return;
    }
    try {
      expire();
    } catch (error) {
      this.#logger.warn({ err: error }, "could not empty the local queue early; its jobs wait until its TTL or the resume");
    }
  }

  async #listen(): Promise<void> {
    const pool = this.#options.listenPool;
    if (!pool || this.#listener || this.#stopped) return;
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      this.#logger.warn({ err: error }, "could not listen for pauses; polling every few seconds until it can");
      return;
    }
    const drop = (error?: Error) => {
      if (this.#listener !== client) return;
      this.#listener = null;
      client.release(error ?? true);
      if (!this.#stopped) this.#logger.warn({ err: error }, "stopped listening for pauses; polling, and listening again at the next poll");
    };
    client.on("error", drop);
    client.on("end", () => drop());
    client.on("notification", (message) => {
      if (message.channel === PAUSES_CHANNEL) void this.refresh();
    });
    try {
      await client.query(`listen "${PAUSES_CHANNEL}"`);
      this.#listener = client;
      // A change between the last read and the LISTEN would otherwise wait for the next poll.
      void this.refresh();
    } catch (error) {
      client.release(error as Error);
      this.#logger.warn({ err: error }, "could not listen for pauses; polling every few seconds until it can");
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(async () => {
      await Promise.all([this.refresh(), this.#listen()]);
      this.#schedule();
    }, this.#options.pollIntervalMs ?? PAUSE_POLL_INTERVAL_MS);
    this.#timer.unref();
  }
}

/** One runner's view of the pauses. */
export class RunnerPauseGate {
  readonly runner: string;
  readonly #watcher: PauseWatcher;
  readonly #tasks: readonly RegisteredTask[];
  readonly #queues: Set<string>;
  #flags: string[] | null = null;

  constructor(watcher: PauseWatcher, runner: string, tasks: readonly RegisteredTask[]) {
    this.runner = runner;
    this.#watcher = watcher;
    this.#tasks = tasks;
    this.#queues = new Set(tasks.flatMap((task) => (task.defaults.queueName ? [task.defaults.queueName] : [])));
    this.recompute();
  }

  /** graphile-worker's `forbiddenFlags`: null while nothing concerning this runner is paused. */
  readonly forbiddenFlags = (): string[] | null => this.#flags;

  recompute(): { before: string[]; after: string[] } {
    const before = this.#flags ?? [];
    const pauses = this.#watcher.current();
    const flags = [
      ...this.#tasks.filter((task) => pauseHolding(pauses, task, null)).map((task) => taskFlag(task.name)),
      ...pauses.filter((pause) => pause.kind === "queue" && this.#queues.has(pause.name)).map((pause) => queueFlag(pause.name)),
    ];
    this.#flags = flags.length > 0 ? flags : null;
    return { before, after: flags };
  }

  /**
   * Before an attempt starts: when a pause holds the job back, gives it back to the queue (its
   * attempt unspent, its run_at kept), records a `deferred` event and returns the error to end the
   * attempt with; graphile-worker's failure statement that follows is fenced by locked_by and
   * changes nothing. Undefined: start it.
   */
  async holdIfPaused(task: RegisteredTask, job: JobSnapshot, held: HeldJob, db: Db, logger: Logger, observers: readonly AttemptObserver[]): Promise<JobPausedError | undefined> {
    if (job.queue && !this.#queues.has(job.queue)) {
      this.#queues.add(job.queue);
      if (this.#watcher.current().some((pause) => pause.kind === "queue" && pause.name === job.queue)) {
        this.recompute();
        // The main runner's workers now bypass its local queue: the jobs it holds go back at once.
        this.#watcher.gateChanged();
      }
    }
    const pause = pauseHolding(this.#watcher.current(), task, job.queue);
    if (!pause) return undefined;
    const error = new JobPausedError(pause);
    try {
      if (await deferJob(db, held, job.runAt, error.message)) {
        logger.info({ jobId: job.id, task: task.name, pause: `${pause.kind}:${pause.name}` }, "job not started: paused; it waits, its attempt not spent");
        await new AttemptHistory(db, logger).deferred(job, error, job.runAt, 0);
        for (const observer of observers) observer.deferred(job, error, 0);
      }
    } catch (deferError) {
      // Not started either way: the failure that follows counts the attempt, as any failed start would.
      logger.warn({ err: deferError, jobId: job.id }, "could not give a paused job back to the queue; its attempt counts as failed");
    }
    return error;
  }
}
