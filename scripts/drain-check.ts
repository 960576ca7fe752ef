/**
 * Drain check (`npm run drain-check`): issue 15's throughput target checked on its own, apart from
 * `npm run bench` and its subject process. 20,000 no-op jobs, added by one plain SQL statement as
 * another service would add them, drained by the service started as in production, against raw
 * graphile-worker with its library defaults at the same concurrency. Target: the service drains
 * at least 5× as fast.
 *
 * The service: `npm run build`, then a temporary app folder laid out as the Dockerfile lays out the
 * image (package.json, crontab, bin/, dist/, the repository's node_modules linked) plus one task
 * file, the compiled no-op, as a user adds a task; migrated with the image's `node
 * bin/observing-jobs.js migrate`, started with the image's CMD (bench/lib/image-command.ts),
 * NODE_ENV=production, the settings production requires and a free PORT, everything else default;
 * ready at the first 200 from /readyz. Raw: `run()` in a child process with graphile-worker's
 * library defaults except `concurrency`, which is the service's default WORKER_CONCURRENCY, and
 * the same task name doing nothing; ready once `run()` resolved. Both write their log lines (the
 * service's JSON at its default level, raw's default console logger, one line per job each) to a
 * file of their own, so each pays for its per-job line as it would in production. Each round and
 * system gets a fresh database; timed from the commit of the jobs until graphile-worker's table is
 * empty and (service) every job's record says succeeded.
 *
 * Settings (environment): DATABASE_URL (any database on a server that lets it create databases;
 * unset: an embedded PostgreSQL of its own), DRAIN_CHECK_ROUNDS (4, as `npm run bench`),
 * DRAIN_CHECK_JOBS (20000), DRAIN_CHECK_DEADLINE_MS (120000 per drain). The summary goes to
 * $TMPDIR/observing-jobs-drain-check.json. Exits 0 with the verdict printed either way, non-zero
 * only when something went wrong (a job lost or failed, a system that did not start or stop).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { parseConfig } from "../src/config.ts";
import { IMAGE_NODE_ARGS } from "../bench/lib/image-command.ts";
import { summarize, type Summary } from "../bench/lib/stats.ts";
import { startOwnPostgres, type OwnPostgres } from "../test/helpers/own-postgres.ts";
import { freePort } from "../test/helpers/ports.ts";

const ROOT = path.resolve(import.meta.dirname, "..");
const ROUNDS = Number(process.env.DRAIN_CHECK_ROUNDS ?? 4);
const JOBS = Number(process.env.DRAIN_CHECK_JOBS ?? 20_000);
const DEADLINE_MS = Number(process.env.DRAIN_CHECK_DEADLINE_MS ?? 120_000);
const TARGET_RATIO = 5;
const POLL_MS = 25;
const READY_TIMEOUT_MS = 60_000;
/** Beyond the service's own shutdown deadline (SHUTDOWN_TIMEOUT_MS, 8.5 s by default). */
const STOP_TIMEOUT_MS = 20_000;
const TASK = "drain_check_noop";
/** Both systems run as many jobs at once as the service does by default. */
const CONCURRENCY = parseConfig({}).worker.concurrency;
for (const [name, value] of Object.entries({ DRAIN_CHECK_ROUNDS: ROUNDS, DRAIN_CHECK_JOBS: JOBS, DRAIN_CHECK_DEADLINE_MS: DEADLINE_MS })) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
}
const SUMMARY_PATH = path.join(os.tmpdir(), "observing-jobs-drain-check.json");
/** What production requires beside DATABASE_URL (src/config.ts), as the footprint scenario sets it. */
const PRODUCTION_SETTINGS = { NODE_ENV: "production", API_TOKENS: "drain-check-token-0123456789", DASHBOARD_SESSION_SECRET: "drain-check-dashboard-session-secret-0123456789" };

type SystemName = "service" | "raw";
interface Running {
  name: SystemName;
  child: ChildProcess;
  exited: Promise<number | string>;
  /** The last of its output, for errors. */
  tail(): Promise<string>;
  /** Raw only: how many times its handler ran, as it said before exiting. */
  handled?: () => number;
}

/** A task file as a user writes it in tasks/, compiled the way tsc compiles dist/tasks/*.js. */
const NOOP_TASK_SOURCE = `// Written by scripts/drain-check.ts: a task that does nothing.
import Type from "typebox";
import { defineTask } from "../src/task.js";
const payload = Type.Object({ seq: Type.Optional(Type.Integer({ minimum: 0 })) }, { additionalProperties: false });
export default defineTask({
    description: "Does nothing (drain check only).",
    payload,
    async run() { },
});
`;

/**
 * Raw graphile-worker: only what it needs to run is set, its default logger included (its lines go
 * to the log file). It says it is ready, and how many times its handler ran, over IPC.
 */
const RAW_SOURCE = `import { run } from ${JSON.stringify(import.meta.resolve("graphile-worker"))};
let handled = 0;
const runner = await run({
  connectionString: process.env.DRAIN_CHECK_DATABASE_URL,
  concurrency: Number(process.env.DRAIN_CHECK_CONCURRENCY),
  taskList: { ${TASK}: async () => { handled++; } },
  noHandleSignals: true,
});
process.once("SIGTERM", () => runner.stop().then(() => process.send({ handled }, () => process.exit(0)), (error) => { console.error(error); process.exit(1); }));
process.send({ ready: true });
await runner.promise;
`;

let interrupted: string | null = null;
/** Resolves when the run is interrupted, for the waits that are races rather than polls. */
const interruption = new Promise<"interrupted">((resolve) => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => ((interrupted = signal), resolve("interrupted")));
});
/** Every wait goes through here, so an interrupted run stops waiting and cleans up. */
async function pause(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  if (interrupted) throw new Error(`interrupted by ${interrupted}`);
}
const log = (message: string) => process.stdout.write(`[drain-check] ${message}\n`);
const children = new Set<ChildProcess>();

async function main(): Promise<void> {
  log("npm run build");
  // npm from the Node that runs this script (the machine's default node may be older).
  const build = spawnSync("npm", ["run", "build"], { cwd: ROOT, encoding: "utf8", env: { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}` } });
  if (build.status !== 0) throw new Error(`npm run build failed (${build.status ?? build.signal}):\n${build.stdout}${build.stderr}`);

  const work = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-drain-check-"));
  let own: OwnPostgres | undefined;
  let admin: pg.Client | undefined;
  const databases = new Set<string>();
  try {
    const app = path.join(work, "app");
    const rawDir = path.join(work, "raw"); // no crontab in raw's working folder: its default schedule is none
    await mkdir(rawDir);
    await makeAppFolder(app);
    await writeFile(path.join(rawDir, "raw.mjs"), RAW_SOURCE);
    if (!process.env.DATABASE_URL) own = await startOwnPostgres();
    const serverUrl = process.env.DATABASE_URL ?? own!.url;
    admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    const postgresVersion = (await admin.query<{ v: string }>("select current_setting('server_version') as v")).rows[0]!.v;
    const cpus = os.cpus();
    const machine = `${cpus.length} × ${cpus[0]?.model.trim() ?? "CPU"}, Node ${process.version}, PostgreSQL ${postgresVersion}${own ? " (embedded)" : ""}`;
    log(`${machine}; ${JOBS} jobs, ${ROUNDS} rounds, concurrency ${CONCURRENCY}; load ${loadAverage()}`);
    log(`service: node ${IMAGE_NODE_ARGS.join(" ")} in ${app}; logs at its default level to a file there; raw: node raw.mjs, its default logger to a file there (both discarded)`);

    const rounds: Array<{ round: number; system: SystemName; seconds: number; jobsPerSecond: number; load: string }> = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const order: SystemName[] = round % 2 === 1 ? ["service", "raw"] : ["raw", "service"];
      for (const system of order) {
        const name = `drain_check_${process.pid}_${round}_${system}`;
        await admin.query(`create database ${name}`);
        databases.add(name);
        const url = new URL(serverUrl);
        url.pathname = `/${name}`;
        try {
          const seconds = await drainOnce(system, url.toString(), app, rawDir, round);
          const entry = { round, system, seconds, jobsPerSecond: JOBS / seconds, load: loadAverage() };
          rounds.push(entry);
          log(`round ${round} ${system}: ${JOBS} jobs in ${seconds.toFixed(3)} s = ${Math.round(entry.jobsPerSecond)} jobs/s (load ${entry.load})`);
        } finally {
          await admin.query(`drop database if exists ${name} with (force)`);
          databases.delete(name);
        }
      }
    }
    const rates = (system: SystemName) => summarize(rounds.filter((entry) => entry.system === system).map((entry) => entry.jobsPerSecond));
    const service = rates("service");
    const raw = rates("raw");
    const ratio = service.median / raw.median;
    const met = ratio >= TARGET_RATIO;
    const show = (s: Summary) => `${Math.round(s.median)} jobs/s [${Math.round(s.min)}-${Math.round(s.max)}]`;
    log(`median service ${show(service)}, raw ${show(raw)}`);
    log(`ratio service/raw ${ratio.toFixed(2)}× (target ≥ ${TARGET_RATIO}×): ${met ? "met" : "MISSED"}`);
    const summary = { date: new Date().toISOString(), machine, jobs: JOBS, concurrency: CONCURRENCY, serviceCommand: ["node", ...IMAGE_NODE_ARGS], rounds, service, raw, ratio, target: TARGET_RATIO, met };
    await writeFile(SUMMARY_PATH, `${JSON.stringify(summary, null, 2)}\n`);
    log(`wrote ${SUMMARY_PATH}`);
  } finally {
    for (const child of children) child.kill("SIGKILL");
    for (const name of databases) await admin?.query(`drop database if exists ${name} with (force)`).catch((error: unknown) => log(`could not drop ${name}: ${String(error)}`));
    await admin?.end();
    await own?.destroy();
    await rm(work, { recursive: true, force: true });
  }
}

/** The image's files (the Dockerfile's COPY lines), dist/ copied so the no-op task file stays out of the repository's. */
async function makeAppFolder(app: string): Promise<void> {
  await mkdir(app);
  for (const file of ["package.json", "package-lock.json", "crontab"]) await copyFile(path.join(ROOT, file), path.join(app, file));
  await cp(path.join(ROOT, "dist"), path.join(app, "dist"), { recursive: true });
  await cp(path.join(ROOT, "bin"), path.join(app, "bin"), { recursive: true });
  await symlink(path.join(ROOT, "node_modules"), path.join(app, "node_modules"), "dir");
  await writeFile(path.join(app, "dist/tasks", `${TASK}.js`), NOOP_TASK_SOURCE);
}

/** One system on its own fresh database: start, add the jobs in one statement, time the drain, check, stop. Seconds. */
async function drainOnce(system: SystemName, url: string, app: string, rawDir: string, round: number): Promise<number> {
  const logPath = path.join(app, `${system}-${round}.log`);
  const running = system === "service" ? await startService(url, app, logPath) : await startRaw(url, rawDir, logPath);
  let failed = true;
  try {
    // One connection for adding and polling, opened before anything is timed.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      // "Another service's plain SQL": graphile-worker's public function, every job in one statement.
      const added = await client.query<{ n: number }>(
        `select count(*)::int as n from graphile_worker.add_jobs(array(
           select json_populate_record(null::graphile_worker.job_spec, json_build_object('identifier', $1::text, 'payload', json_build_object('seq', i)))
           from generate_series(1, $2::int) i))`,
        [TASK, JOBS],
      );
      const committedAt = performance.now();
      if (added.rows[0]!.n !== JOBS) throw new Error(`${system}: add_jobs added ${added.rows[0]!.n} jobs, not ${JOBS}`);
      // CASE so the records are counted only once the jobs are gone, not on every poll.
      const drained =
        system === "raw"
          ? "select not exists (select from graphile_worker._private_jobs) as done"
          : `select case when exists (select from graphile_worker._private_jobs) then false
               else (select count(*) from observing_jobs.job_records where task = '${TASK}' and phase = 'succeeded') = ${JOBS} end as done`;
      for (;;) {
        const { rows } = await client.query<{ done: boolean }>(drained);
        if (rows[0]!.done) break;
        if (performance.now() - committedAt > DEADLINE_MS) throw new Error(`${system}: not drained within ${DEADLINE_MS} ms of the commit; left: ${await describeLeft(client, system)}`);
        if (running.child.exitCode !== null || running.child.signalCode !== null) throw new Error(`${system} exited while draining: ${await running.tail()}`);
        await pause(POLL_MS);
      }
      const seconds = (performance.now() - committedAt) / 1000;
      if (system === "service") await checkServiceHistory(client);
      failed = false;
      return seconds;
    } finally {
      await client.end();
    }
  } finally {
    await stop(running, failed);
  }
}

/** Every job has one record, succeeded at its first attempt, recorded as added by SQL; no attempt failed. */
async function checkServiceHistory(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ records: number; succeeded: number; first: number; sql: number; failures: number }>(
    `select count(*)::int as records, count(*) filter (where phase = 'succeeded')::int as succeeded, count(*) filter (where attempts = 1)::int as first,
       count(*) filter (where source = 'sql')::int as sql,
       (select count(*) from observing_jobs.job_events e where e.event in ('failed', 'exhausted', 'rescued', 'abandoned'))::int as failures
     from observing_jobs.job_records where task = $1`,
    [TASK],
  );
  const r = rows[0]!;
  if (r.records !== JOBS || r.succeeded !== JOBS || r.first !== JOBS || r.sql !== JOBS || r.failures !== 0) {
    throw new Error(`service: history is not ${JOBS} jobs succeeded at their first attempt: ${JSON.stringify(r)}`);
  }
}

/** What is still in graphile-worker's table (and, for the service, its records), for the deadline's error. */
async function describeLeft(client: pg.Client, system: SystemName): Promise<string> {
  const jobs = await client.query(
    `select t.identifier, count(*)::int as jobs, count(*) filter (where j.locked_at is not null)::int as locked,
       count(*) filter (where j.attempts > 0)::int as attempted, max(j.last_error) as last_error
     from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id group by 1`,
  );
  const records = system === "service" ? await client.query("select phase, count(*)::int as n from observing_jobs.job_records group by 1") : null;
  return JSON.stringify({ jobs: jobs.rows, records: records?.rows });
}

function track(name: SystemName, child: ChildProcess, logPath: string): Running {
  children.add(child);
  const exited = new Promise<number | string>((resolve) => child.once("close", (code, signal) => resolve(code ?? signal ?? "?")));
  void exited.then(() => children.delete(child));
  return { name, child, exited, tail: async () => (await readFile(logPath, "utf8").catch(() => "")).slice(-3000) };
}

async function startService(url: string, app: string, logPath: string): Promise<Running> {
  const port = await freePort();
  const environment = { PATH: process.env.PATH, ...PRODUCTION_SETTINGS, DATABASE_URL: url, HOST: "127.0.0.1", PORT: String(port) };
  // Production migrates before a revision starts (the image's `node bin/observing-jobs.js migrate`), not on start.
  const migrate = spawnSync(process.execPath, ["bin/observing-jobs.js", "migrate"], { cwd: app, env: environment, encoding: "utf8" });
  if (migrate.status !== 0) throw new Error(`migrate failed (${migrate.status ?? migrate.signal}): ${migrate.stdout}${migrate.stderr}`);
  const fd = openSync(logPath, "a");
  const running = track("service", spawn(process.execPath, IMAGE_NODE_ARGS, { cwd: app, env: environment, stdio: ["ignore", fd, fd] }), logPath);
  closeSync(fd);
  const began = performance.now();
  for (;;) {
    if (running.child.exitCode !== null || running.child.signalCode !== null) {
      throw new Error(`the service exited (${running.child.exitCode ?? running.child.signalCode}) before it was ready: ${await running.tail()}`);
    }
    if (performance.now() - began > READY_TIMEOUT_MS) throw await stopAfter(running, `the service was not ready within ${READY_TIMEOUT_MS} ms`);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((response) => response.status === 200, () => false);
    if (ready) return running;
    await pause(POLL_MS);
  }
}

async function startRaw(url: string, rawDir: string, logPath: string): Promise<Running> {
  const fd = openSync(logPath, "a");
  const child = spawn(process.execPath, ["raw.mjs"], {
    cwd: rawDir,
    env: { PATH: process.env.PATH, DRAIN_CHECK_DATABASE_URL: url, DRAIN_CHECK_CONCURRENCY: String(CONCURRENCY) },
    stdio: ["ignore", fd, fd, "ipc"],
  });
  closeSync(fd);
  const running = track("raw", child, logPath);
  let handled = Number.NaN;
  const ready = new Promise<"ready">((resolve) =>
    child.on("message", (message: { ready?: boolean; handled?: number }) => {
      if (message.ready) resolve("ready");
      if (typeof message.handled === "number") handled = message.handled;
    }),
  );
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(resolve, READY_TIMEOUT_MS, "timeout")));
  const outcome = await Promise.race([ready, running.exited, timedOut, interruption]).finally(() => clearTimeout(timer));
  if (outcome === "interrupted") throw new Error(`interrupted by ${interrupted}`);
  if (outcome === "timeout") throw await stopAfter(running, `raw graphile-worker was not ready within ${READY_TIMEOUT_MS} ms`);
  if (outcome !== "ready") throw new Error(`raw graphile-worker exited (${outcome}) before it was ready: ${await running.tail()}`);
  return { ...running, handled: () => handled };
}

async function stopAfter(running: Running, message: string): Promise<Error> {
  await stop(running, true);
  return new Error(`${message}: ${await running.tail()}`);
}

/** SIGTERM and wait for the exit; when the round has failed already, anything goes and nothing more is thrown. */
async function stop(running: Running, failed: boolean): Promise<void> {
  if (running.child.exitCode !== null || running.child.signalCode !== null) {
    if (!failed) throw new Error(`${running.name} exited before it was stopped: ${await running.tail()}`);
    return;
  }
  running.child.kill("SIGTERM");
  const timer = new Promise<"timeout">((resolve) => setTimeout(resolve, STOP_TIMEOUT_MS, "timeout").unref());
  const outcome = await Promise.race([running.exited, timer]);
  if (outcome === "timeout") running.child.kill("SIGKILL");
  if (failed) return;
  if (outcome !== 0) throw new Error(`${running.name} did not exit cleanly after SIGTERM (${outcome}): ${await running.tail()}`);
  // Raw's run count ('close' comes after its IPC channel closed): a job run twice, or not at all, shows here.
  const handled = running.handled?.();
  if (handled !== undefined && handled !== JOBS) throw new Error(`raw graphile-worker ran the task ${handled} times, not ${JOBS}`);
}

const loadAverage = () => os.loadavg().map((value) => value.toFixed(2)).join(" ");

try {
  await main();
} catch (error) {
  process.stderr.write(`drain-check: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
