/**
 * The ops CLI, kept as the old one-shot binary was:
 *   observing-jobs migrate
 *   observing-jobs run <task> [--payload JSON]     run one task in this process, outside the queue
 *   observing-jobs add <task> [--payload JSON] [--run-at ISO] [--queue NAME] [--priority N]
 *                             [--max-attempts N] [--job-key KEY] [--force]
 *   observing-jobs show <job id>                   a job's state, result and history, as JSON
 *   observing-jobs tasks                           list the registered tasks
 *   observing-jobs pause|resume <task|queue|group> <name> [--reason TEXT] [--by NAME]
 *   observing-jobs pauses                          what is paused now
 *   observing-jobs setup-roles [--migrator NAME] [--runtime NAME] [--enqueuers NAME,...]
 */
import { randomUUID } from "node:crypto";
import os from "node:os";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ConfigError, loadConfig as loadConfigFromEnv, type Config } from "./config.ts";
import { connectDatabase, type ConnectedDatabase } from "./db/connect.ts";
import type { Db } from "./db/database.ts";
import { migrateDatabase } from "./db/migrate.ts";
import { DEFAULT_ROLE_NAMES, setupRoles } from "./db/roles.ts";
import { findPauses } from "./db/repositories/pauses.ts";
import { checkPayload, enqueueJob, InvalidPayloadError } from "./enqueue.ts";
import { describePause, pause, pauseHolding, PAUSE_KINDS, PAUSE_REASON_MAX_CHARS, resume, UnknownPauseTargetError, type PauseKind } from "./lifecycle/pauses.ts";
import { isJobId } from "./input-limits.ts";
import { jobDetailsJson } from "./lifecycle/job-json.ts";
import { findJob } from "./lifecycle/jobs.ts";
import { storableResult } from "./lifecycle/results.ts";
import { abandonBufferedLogs, flushLogs, makeLogger, type Logger } from "./observability/logger.ts";
import { findTaskServers } from "./reliability/task-servers.ts";
import { loadRegistry, UnknownTaskError } from "./registry.ts";
import type { EnqueueOptions } from "./task.ts";
import { makeUpstreamClients } from "./upstream/clients.ts";
import { executeTask } from "./worker/execute.ts";

export const USAGE = `usage: observing-jobs <command> [options]

commands:
  migrate                      apply graphile-worker's and the service's migrations
  run <task> [--payload JSON]  run one task now, in this process, outside the queue
  add <task> [--payload JSON]  enqueue a job (refused when running instances do not know the task)
      [--run-at ISO-8601] [--queue NAME] [--priority N] [--max-attempts N] [--job-key KEY] [--force]
  show <job id>                a job's state, result and history, as JSON (GET /jobs/{id}'s content)
  tasks                        list the registered tasks
  pause <kind> <name>          pause a task, a named queue or a cap group (kind: task, queue or group):
      [--reason TEXT] [--by NAME]  no new attempt starts on any instance; running ones finish; jobs wait
  resume <kind> <name>         resume it: its waiting jobs start at once
      [--reason TEXT] [--by NAME]  (--by: who, for the history; default: your OS user name)
  pauses                       what is paused now
  setup-roles                  create the least-privilege database roles (run as the database admin)
      [--migrator NAME] [--runtime NAME] [--enqueuers NAME,NAME]
  help                         show this text`;

export class UsageError extends Error {
  override name = "UsageError";
}

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  loadConfig: () => Config;
  /** Aborts a `run` in progress (Ctrl-C). */
  signal?: AbortSignal;
}

const OPTIONS = {
  payload: { type: "string" },
  "run-at": { type: "string" },
  queue: { type: "string" },
  priority: { type: "string" },
  "max-attempts": { type: "string" },
  "job-key": { type: "string" },
  migrator: { type: "string" },
  runtime: { type: "string" },
  enqueuers: { type: "string" },
  force: { type: "boolean" },
  reason: { type: "string" },
  by: { type: "string" },
  help: { type: "boolean", short: "h" },
} satisfies ParseArgsConfig["options"];

/** Runs one CLI invocation; returns the exit code (0 ok, 1 failure, 2 usage error). */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`observing-jobs: ${error.message}\n\n${USAGE}\n`);
      return 2;
    }
    if (error instanceof ConfigError || error instanceof InvalidPayloadError || error instanceof UnknownTaskError || error instanceof UnknownPauseTargetError) {
      io.stderr(`observing-jobs: ${error.message}\n`);
      return 2;
    }
    io.stderr(`observing-jobs: ${(error as Error).message}\n`);
    return 1;
  }
}

async function dispatch(argv: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\. To specify a positional argument.*$/s, ""));
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || command === "help" || command === undefined) {
    io.stdout(`${USAGE}\n`);
    return command === undefined && !values.help ? 2 : 0;
  }
  const jobOptions = ["run-at", "queue", "priority", "max-attempts", "job-key"] as const;
  const allowed: Record<string, readonly string[]> = {
    migrate: [],
    tasks: [],
    show: [],
    run: ["payload"],
    add: ["payload", "force", ...jobOptions],
    "setup-roles": ["migrator", "runtime", "enqueuers"],
    pause: ["reason", "by"],
    resume: ["reason", "by"],
    pauses: [],
  };
  const allowedHere = allowed[command];
  if (!allowedHere) throw new UsageError(`unknown command '${command}'`);
  for (const name of Object.keys(values)) {
    if (name !== "help" && !allowedHere.includes(name)) throw new UsageError(`option --${name} does not apply to '${command}'`);
  }
  const needsTask = command === "run" || command === "add";
  const pausing = command === "pause" || command === "resume";
  if (needsTask && rest.length !== 1) throw new UsageError(`'${command}' takes exactly one task name, got ${rest.length}`);
  if (command === "show") {
    if (rest.length !== 1) throw new UsageError(`'show' takes exactly one job id, got ${rest.length}`);
    if (!isJobId(rest[0]!)) throw new UsageError(`<job id> must be a whole number from 1 to 9223372036854775807, got '${rest[0]}'`);
  } else if (!needsTask && !pausing && rest.length > 0) throw new UsageError(`'${command}' takes no arguments, got '${rest.join(" ")}'`);
  const target = pausing ? parsePauseTarget(command, rest, values) : undefined;

  const payload = values.payload === undefined ? {} : parseJsonOption("--payload", values.payload);
  const enqueueOptions = needsTask ? parseEnqueueOptions(values) : {};
  const registry = await loadRegistry();

  if (command === "tasks") {
    for (const task of registry.all()) io.stdout(`${task.name}\t${task.description}\n`);
    return 0;
  }
  const taskName = rest[0]!;
  // An unknown task or a bad payload fails before any connection is made.
  if (needsTask) checkPayload(registry.get(taskName), payload);

  const config = io.loadConfig();
  // Logs go to stderr so that stdout carries only the command's result.
  const logger = makeLogger(config.log, { toStderr: true });
  // Operator commands (migrations, a task run by hand) get no statement timeout.
  const database = await connectDatabase(config, logger, 4, { statementTimeoutMs: null });
  try {
    if (command === "migrate" || config.database.migrateOnStart) await migrateDatabase(database.pool, database.db, logger);
    if (command === "migrate") {
      io.stdout("migrations applied\n");
      return 0;
    }
    if (command === "setup-roles") {
      const roles = {
        migrator: values.migrator ?? DEFAULT_ROLE_NAMES.migrator,
        runtime: values.runtime ?? DEFAULT_ROLE_NAMES.runtime,
        enqueuers: values.enqueuers === undefined ? DEFAULT_ROLE_NAMES.enqueuers : values.enqueuers.split(",").filter(Boolean),
      };
      io.stdout(`${JSON.stringify({ roles, ...(await setupRoles(database.pool, roles)) })}\n`);
      return 0;
    }
    if (target) return await changePause(command as "pause" | "resume", target, database.db, registry, io);
    if (command === "pauses") {
      for (const held of await findPauses(database.db)) {
        io.stdout(`${JSON.stringify({ kind: held.kind, name: held.name, pausedBy: held.pausedBy, pausedAt: held.pausedAt, reason: held.reason })}\n`);
      }
      return 0;
    }
    if (command === "show") {
      const job = await findJob(database.db, rest[0]!);
      if (!job) {
        io.stderr(`observing-jobs: no job with id ${rest[0]}\n`);
        return 1;
      }
      io.stdout(`${JSON.stringify(jobDetailsJson(job))}\n`);
      return 0;
    }
    if (command === "add") {
      if (!values.force) {
        const refusal = await refuseUnservedTask(database.db, taskName, config, io);
        if (refusal) return refusal;
      }
      const job = await enqueueJob(database.db, registry, taskName, payload, enqueueOptions, { source: "cli" });
      io.stdout(`${JSON.stringify({ jobId: job.id, task: job.task, runAt: job.runAt, queueName: job.queueName })}\n`);
      const held = pauseHolding(await findPauses(database.db), registry.get(taskName), job.queueName);
      if (held) io.stderr(`observing-jobs: warning: ${describePause(held)}; the job waits until it is resumed\n`);
      return 0;
    }
    return await runNow(taskName, payload, { database, registry, config, logger, io });
  } finally {
    await database.close();
    // main() exits at once with the code: what stderr's reader has not taken by then is given up.
    if (!(await flushLogs(logger))) abandonBufferedLogs(logger);
  }
}

/**
 * Warns when no instance runs at all (the job waits for one), refuses (exit 1) when instances run
 * but none knows the task: they started before its task file was added and need a restart.
 */
async function refuseUnservedTask(db: Db, taskName: string, config: Config, io: CliIo): Promise<number | null> {
  // A pool quieter than the rescue threshold is about to be declared dead: it does not count.
  const servers = await findTaskServers(db, taskName, config.reliability.rescueAfterMs);
  if (!servers || servers.serving > 0 || servers.unknown > 0) return null;
  if (servers.running === 0) {
    io.stderr(`observing-jobs: warning: no service instance is running; the job waits in the queue until one starts\n`);
    return null;
  }
  io.stderr(
    `observing-jobs: ${servers.running === 1 ? "the running instance does" : `none of the ${servers.running} running instances does`} not know task '${taskName}' ` +
      `(it started before the task was added): restart the service to load it, or pass --force to enqueue the job anyway\n`,
  );
  return 1;
}

async function runNow(
  taskName: string,
  payload: unknown,
  env: { database: ConnectedDatabase; registry: Awaited<ReturnType<typeof loadRegistry>>; config: Config; logger: Logger; io: CliIo },
): Promise<number> {
  const task = env.registry.get(taskName);
  const started = Date.now();
  const returned = await executeTask(
    task,
    payload,
    { id: `cli-${randomUUID()}`, attempt: 1, maxAttempts: 1, queueName: null },
    { db: env.database.db, registry: env.registry, upstream: makeUpstreamClients(env.config), logger: env.logger, config: env.config },
    env.io.signal ? [env.io.signal] : [],
  );
  // The result as a job would keep it (redacted, bounded); a run outside the queue has no record to keep it in.
  const result = returned === undefined ? {} : { result: storableResult(returned, task.sensitive).value };
  env.io.stdout(`${JSON.stringify({ task: taskName, status: "succeeded", durationMs: Date.now() - started, ...result })}\n`);
  return 0;
}

interface PauseTarget {
  kind: PauseKind;
  name: string;
  by: string;
  reason: string | undefined;
}

/** `pause task resolve_taxa`: the kind and name, and who (an explicit --by, else the OS user). */
function parsePauseTarget(command: string, rest: string[], values: { reason?: string; by?: string }): PauseTarget {
  const [kind, name, ...extra] = rest;
  if (kind === undefined || name === undefined || extra.length > 0) {
    throw new UsageError(`'${command}' takes a kind (${PAUSE_KINDS.join(", ")}) and a name, e.g. '${command} task resolve_taxa', got ${rest.length} argument(s)`);
  }
  if (!(PAUSE_KINDS as readonly string[]).includes(kind)) throw new UsageError(`'${command}': the kind must be one of ${PAUSE_KINDS.join(", ")}, got '${kind}'`);
  if (name.trim() === "") throw new UsageError(`'${command}': the name must not be empty`);
  if (values.by !== undefined && values.by.trim() === "") throw new UsageError("--by must not be empty");
  if (values.reason !== undefined && values.reason.length > PAUSE_REASON_MAX_CHARS) throw new UsageError(`--reason must be at most ${PAUSE_REASON_MAX_CHARS} characters, got ${values.reason.length}`);
  return { kind: kind as PauseKind, name, by: values.by?.trim() ?? `cli:${osUser()}`, reason: values.reason };
}

function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return "unknown"; // no passwd entry for this uid (some containers)
  }
}

async function changePause(command: "pause" | "resume", target: PauseTarget, db: Db, registry: Awaited<ReturnType<typeof loadRegistry>>, io: CliIo): Promise<number> {
  const { kind, name, by, reason } = target;
  if (command === "pause") {
    const result = await pause(db, registry, kind, name, by, reason);
    io.stdout(`${JSON.stringify({ paused: true, changed: result.created, ...result.pause })}\n`);
    if (!result.created) io.stderr(`observing-jobs: ${kind} '${name}' was already paused (by ${result.pause.pausedBy}); the first pause stands\n`);
    return 0;
  }
  const ended = await resume(db, registry, kind, name, by, reason);
  io.stdout(`${JSON.stringify({ paused: false, changed: ended !== null, kind, name })}\n`);
  if (!ended) io.stderr(`observing-jobs: ${kind} '${name}' was not paused\n`);
  return 0;
}

function parseJsonOption(name: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${name} must be JSON: ${(error as Error).message}`);
  }
}

function parseEnqueueOptions(values: Partial<Record<keyof typeof OPTIONS, string | boolean>>): EnqueueOptions {
  const options: EnqueueOptions = {};
  const runAt = values["run-at"];
  if (typeof runAt === "string") {
    const date = new Date(runAt);
    if (Number.isNaN(date.getTime())) throw new UsageError(`--run-at must be an ISO-8601 time, got '${runAt}'`);
    options.runAt = date;
  }
  const integer = (name: "priority" | "max-attempts", min: number, max: number): number | undefined => {
    const value = values[name];
    if (typeof value !== "string") return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got '${value}'`);
    }
    return n;
  };
  const priority = integer("priority", -32768, 32767);
  if (priority !== undefined) options.priority = priority;
  const maxAttempts = integer("max-attempts", 1, 32767);
  if (maxAttempts !== undefined) options.maxAttempts = maxAttempts;
  if (typeof values.queue === "string") options.queueName = values.queue;
  if (typeof values["job-key"] === "string") options.jobKey = values["job-key"];
  return options;
}

/** Entry point of the `observing-jobs` binary. */
export async function main(): Promise<never> {
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort(new Error("interrupted")));
  const code = await runCli(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    loadConfig: loadConfigFromEnv,
    signal: controller.signal,
  });
  process.exit(code);
}

if (import.meta.main) await main();
