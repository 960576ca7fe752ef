/**
 * One system under test, in a process of its own (forked by bench/lib/subject-process.ts): either raw
 * graphile-worker `run()` with a no-op task, or the full observing-jobs service (startService with
 * the real tasks plus bench/tasks/bench_noop.ts). Its own process gives each system its own event
 * loop, heap and RSS, and keeps the load generators' CPU out of it. The parent sends commands over
 * IPC; everything timed across the enqueue → handler path is timed here, on one clock.
 *
 * Both systems get the same shape: a worker pool (the service's own pool, or a pool of the same
 * size for raw) and an "app" pool for in-process enqueuing (the atomic-enqueue helper for the
 * service, WorkerUtils for raw), as an application would hold.
 */
import http from "node:http";
import { makeWorkerUtils, run, type AddJobsJobSpec, type Runner, type WorkerUtils } from "graphile-worker";
import pg from "pg";
import { BENCH_TASKS_DIRECTORY, NOOP_TASK, noopProbe } from "./lib/noop.ts";
import { OUT_OF_THE_BOX } from "./lib/out-of-the-box.ts";

export interface SubjectOptions {
  system: "raw" | "service";
  databaseUrl: string;
  concurrency: number;
  /** Raw graphile-worker's pool: what the service's pool holds for one runner. */
  rawPoolSize: number;
  /** The in-process enqueuers' pool (the application's, for the helper). */
  appPoolSize: number;
  /**
   * graphile-worker's localQueue.size; 0 leaves it off. OUT_OF_THE_BOX: each system as it comes,
   * graphile-worker with its library defaults and the service with its own.
   */
  localQueueSize: number;
  pollIntervalMs: number;
  apiToken: string;
  gbifBaseUrl?: string;
}

export type Command =
  | { cmd: "awaitJobs"; count: number; timeoutMs: number }
  | { cmd: "latency"; mode: LatencyMode; count: number; warmup: number; intervalMs: number }
  | { cmd: "enqueueLoad"; kind: "single" | "batch"; callers: number; batchSize: number; warmupMs: number; durationMs: number; runAt: string }
  | { cmd: "stats" }
  | { cmd: "stop" };
export type LatencyMode = "addJob" | "helper" | "http";

export interface Ready {
  event: "ready";
  url: string | null;
  /** From process start to the system being up, on this process's clock. */
  readyMs: number;
}
export interface Stats {
  rss: number;
  heapUsed: number;
  /** Statements sent to PostgreSQL by this process since it started (every pg client counted). */
  queries: number;
}
export interface LoadResult {
  jobsPerSecond: number;
  calls: number;
}

// Count every statement this process sends, whichever library sends it: the idle scenario's
// queries per second, exact and without the delay of PostgreSQL's statistics.
let queries = 0;
const originalQuery = pg.Client.prototype.query as (...args: unknown[]) => unknown;
pg.Client.prototype.query = function countedQuery(this: pg.Client, ...args: unknown[]) {
  queries += 1;
  return originalQuery.apply(this, args);
} as typeof pg.Client.prototype.query;

interface System {
  url: string | null;
  enqueueOne(seq: number, runAt?: Date): Promise<unknown>;
  enqueueMany(seqs: number[], runAt: Date): Promise<unknown>;
  stop(): Promise<void>;
}

async function startRaw(options: SubjectOptions, appPool: pg.Pool): Promise<System> {
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.rawPoolSize });
  let runner: Runner | undefined;
  let utils: WorkerUtils | undefined;
  try {
    runner = await run({
      pgPool: pool,
      taskList: { [NOOP_TASK]: async (payload) => noopProbe.onRun((payload as { seq?: number }).seq) },
      // No schedule: left unset, graphile-worker would read the service's ./crontab (and refuse its stale= option).
      parsedCronItems: [],
      noHandleSignals: true,
      preset: {
        worker:
          options.localQueueSize === OUT_OF_THE_BOX
            ? { concurrentJobs: options.concurrency, pollInterval: options.pollIntervalMs }
            : {
                concurrentJobs: options.concurrency,
                pollInterval: options.pollIntervalMs,
                // What the service sets on every runner (src/worker/worker.ts): "the same options".
                completeJobBatchDelay: 0,
                failJobBatchDelay: 0,
                ...(options.localQueueSize > 0 ? { localQueue: { size: options.localQueueSize } } : {}),
              },
      },
    });
    utils = await makeWorkerUtils({ pgPool: appPool });
  } catch (error) {
    await runner?.stop();
    await pool.end();
    throw error;
  }
  const workerUtils = utils;
  const workerRunner = runner;
  return {
    url: null,
    enqueueOne: (seq, runAt) => workerUtils.addJob(NOOP_TASK, { seq }, runAt ? { runAt } : {}),
    enqueueMany: (seqs, runAt) => workerUtils.addJobs(seqs.map((seq): AddJobsJobSpec => ({ identifier: NOOP_TASK, payload: { seq }, runAt }))),
    async stop() {
      await workerRunner.stop();
      await workerUtils.release();
      await pool.end();
    },
  };
}

async function startObservingJobs(options: SubjectOptions, appPool: pg.Pool): Promise<System> {
  // Loaded here, not at the top, so the raw subject's start-up and memory include none of it.
  const [{ parseConfig }, { createJobClient }, { makeLogger }, { loadRegistry, TaskRegistry }, { startService }, { Kysely, PostgresDialect }] =
    await Promise.all([
      import("../src/config.ts"),
      import("../src/index.ts"),
      import("../src/observability/logger.ts"),
      import("../src/registry.ts"),
      import("../src/service.ts"),
      import("kysely"),
    ]);
  const config = parseConfig({
    NODE_ENV: "production",
    DATABASE_URL: options.databaseUrl,
    MIGRATE_ON_START: "false",
    API_TOKENS: options.apiToken,
    DASHBOARD_SESSION_SECRET: "bench-dashboard-session-secret-0123456789",
    // The benchmark is one caller enqueueing as fast as it can: exactly what the rate limit is for.
    HTTP_RATE_LIMIT_MAX: "0",
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "info",
    LOG_FORMAT: "json",
    WORKER_CONCURRENCY: String(options.concurrency),
    WORKER_POLL_INTERVAL_MS: String(options.pollIntervalMs),
    ...(options.localQueueSize === OUT_OF_THE_BOX ? {} : { WORKER_LOCAL_QUEUE_SIZE: String(options.localQueueSize) }),
    ...(options.gbifBaseUrl ? { GBIF_BASE_URL: options.gbifBaseUrl } : {}),
  });
  const registry = new TaskRegistry([...(await loadRegistry()).all(), ...(await loadRegistry(BENCH_TASKS_DIRECTORY)).all()]);
  const service = await startService(config, makeLogger(config.log), { registry });
  const client = await createJobClient({ tasksDirectory: BENCH_TASKS_DIRECTORY });
  const appDb = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: appPool }) });
  // What src/main.ts does once ready; awaited here, so its pause falls before any measurement.
  await service.releaseStartupMemory();
  return {
    url: service.url,
    enqueueOne: (seq, runAt) => client.enqueue(appDb, NOOP_TASK, { seq }, runAt ? { runAt } : {}),
    enqueueMany: (seqs, runAt) =>
      appDb.transaction().execute((trx) => client.enqueueMany(trx, NOOP_TASK, seqs.map((seq) => ({ seq })), { runAt })),
    stop: () => service.stop(),
  };
}

/** Jobs enqueued `intervalMs` apart; each sample is enqueue call → handler start. */
async function measureLatency(system: System, command: Extract<Command, { cmd: "latency" }>): Promise<number[]> {
  const total = command.warmup + command.count;
  const enqueuedAt = new Map<number, number>();
  const latencies: number[] = [];
  let started = 0;
  const { promise: allStarted, resolve, reject } = Promise.withResolvers<void>();
  noopProbe.onRun = (seq) => {
    const now = performance.now();
    if (seq !== undefined && seq >= command.warmup) latencies.push(now - enqueuedAt.get(seq)!);
    if (++started === total) resolve();
  };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const enqueue: (seq: number) => Promise<unknown> =
    command.mode === "http" ? (seq) => post(system.url!, agent, seq) : (seq) => system.enqueueOne(seq);
  const calls: Array<Promise<unknown>> = [];
  try {
    for (let seq = 0; seq < total; seq++) {
      // Fire on a fixed cadence, not after the previous call: a slow call must not space out the rest.
      enqueuedAt.set(seq, performance.now());
      calls.push(enqueue(seq).catch(reject));
      await sleep(command.intervalMs);
    }
    await Promise.all(calls);
    await withTimeout(allStarted, 30_000, () => `only ${started} of ${total} jobs started`);
    return latencies;
  } finally {
    agent.destroy();
  }
}

function post(url: string, agent: http.Agent, seq: number): Promise<void> {
  const body = JSON.stringify({ seq });
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${url}/jobs/${NOOP_TASK}`,
      {
        method: "POST",
        agent,
        headers: { authorization: `Bearer ${options.apiToken}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (response) => {
        response.resume();
        response.on("end", () => (response.statusCode === 202 ? resolve() : reject(new Error(`POST answered ${response.statusCode}`))));
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

/** `callers` loops enqueueing for warmupMs + durationMs; jobs counted over the last durationMs only. */
async function enqueueLoad(system: System, command: Extract<Command, { cmd: "enqueueLoad" }>): Promise<LoadResult> {
  const runAt = new Date(command.runAt);
  const begin = performance.now();
  const measureFrom = begin + command.warmupMs;
  const end = measureFrom + command.durationMs;
  let jobs = 0;
  let calls = 0;
  let seq = 0;
  const caller = async () => {
    while (performance.now() < end) {
      if (command.kind === "single") await system.enqueueOne(seq++, runAt);
      else await system.enqueueMany(Array.from({ length: command.batchSize }, () => seq++), runAt);
      const finished = performance.now();
      if (finished >= measureFrom && finished <= end) {
        jobs += command.kind === "single" ? 1 : command.batchSize;
        calls += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: command.callers }, caller));
  return { jobsPerSecond: jobs / (command.durationMs / 1000), calls };
}

async function awaitJobs(command: Extract<Command, { cmd: "awaitJobs" }>): Promise<{ handled: number }> {
  let handled = 0;
  const { promise, resolve } = Promise.withResolvers<void>();
  noopProbe.onRun = () => {
    if (++handled === command.count) resolve();
  };
  await withTimeout(promise, command.timeoutMs, () => `only ${handled} of ${command.count} jobs ran`);
  return { handled };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `message` is read when the time is up, so it can say how far the work got. */
async function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message())), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const options = JSON.parse(process.env.BENCH_SUBJECT ?? "null") as SubjectOptions;
if (!options || !process.send) throw new Error("bench/subject.ts is forked by the benchmark with BENCH_SUBJECT set");
const send = process.send.bind(process);

const appPool = new pg.Pool({ connectionString: options.databaseUrl, max: options.appPoolSize });
const system = options.system === "raw" ? await startRaw(options, appPool) : await startObservingJobs(options, appPool);
send({ event: "ready", url: system.url, readyMs: performance.now() } satisfies Ready);

process.on("message", (message: Command & { id: number }) => {
  void handle(message).then(
    (result) => send({ id: message.id, ok: true, result }),
    (error: unknown) => send({ id: message.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
  );
});

async function handle(command: Command): Promise<unknown> {
  switch (command.cmd) {
    case "awaitJobs":
      return awaitJobs(command);
    case "latency":
      return measureLatency(system, command);
    case "enqueueLoad":
      return enqueueLoad(system, command);
    case "stats": {
      const memory = process.memoryUsage();
      return { rss: memory.rss, heapUsed: memory.heapUsed, queries } satisfies Stats;
    }
    case "stop":
      await system.stop();
      await appPool.end();
      // Exit once the reply is out; nothing else is left to wait for.
      setImmediate(() => process.exit(0));
      return null;
  }
}
