/**
 * The task registry, derived from the tasks/ folder: one file per task, the file name is the
 * task's identifier. The worker, the crontab check, the CLI, the HTTP API and the dashboard all
 * read this one registry.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { closest, distance } from "fastest-levenshtein";
import type { TSchema } from "typebox";
import { compilePayloadValidator, type PayloadValidator } from "./payload-validation.ts";
import type { CapScope, JobKeyMode, TaskDefinition } from "./task.ts";

/** tasks/ beside src/: the TypeScript sources in a checkout, dist/tasks in the built image. */
export const TASKS_DIRECTORY = path.resolve(import.meta.dirname, "../tasks");

/** The runner of every task without a concurrency cap (src/worker/worker.ts). */
export const MAIN_RUNNER = "main";

/** A cap is also a runner's worker count, and a global one that many slot rows: beyond this it is a mistake. */
const MAX_CAP = 1000;

const TASK_NAME = /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/;

/** A task's defaults with every value filled in. */
export interface ResolvedTaskDefaults {
  maxAttempts: number;
  queueName: string | null;
  priority: number;
  jobKey: ((payload: unknown) => string | undefined) | null;
  jobKeyMode: JobKeyMode;
  timeoutMs: number;
  concurrency: { limit: number; group: string; scope: CapScope } | null;
}

const DEFAULT_TASK_DEFAULTS: Omit<ResolvedTaskDefaults, "jobKey" | "concurrency"> = {
  maxAttempts: 5,
  queueName: null,
  priority: 0,
  jobKeyMode: "replace",
  timeoutMs: 60_000,
};

export interface RegisteredTask {
  name: string;
  description: string;
  schema: TSchema;
  defaults: ResolvedTaskDefaults;
  validate: PayloadValidator<unknown>;
  run: TaskDefinition["run"];
  onExhausted: TaskDefinition["onExhausted"] | null;
  sensitive: string[];
  internal: boolean;
}

export class UnknownTaskError extends Error {
  override name = "UnknownTaskError";
  readonly task: string;
  readonly suggestion: string | undefined;
  constructor(task: string, suggestion: string | undefined) {
    super(`unknown task '${task}'${suggestion ? ` (did you mean '${suggestion}'?)` : ""}`);
    this.task = task;
    this.suggestion = suggestion;
  }
}

export class TaskRegistry {
  readonly #tasks: ReadonlyMap<string, RegisteredTask>;

  constructor(tasks: Iterable<RegisteredTask>) {
    const sorted = [...tasks].sort((a, b) => compareTaskNames(a.name, b.name));
    const seen = new Set<string>();
    const groups = new Map<string, { limit: number; scope: CapScope; task: string }>();
    for (const task of sorted) {
      if (seen.has(task.name)) throw new Error(`task '${task.name}' is defined twice`);
      seen.add(task.name);
      const cap = task.defaults.concurrency;
      if (!cap) continue;
      // The main runner's name: a group of that name would be mistaken for it (heartbeats, the pools page).
      if (cap.group === MAIN_RUNNER) throw new Error(`task '${task.name}': concurrency group '${MAIN_RUNNER}' is reserved for the runner of uncapped tasks`);
      const other = groups.get(cap.group);
      if (other && other.limit !== cap.limit) {
        throw new Error(`tasks '${other.task}' and '${task.name}' share concurrency group '${cap.group}' with different limits (${other.limit}, ${cap.limit})`);
      }
      if (other && other.scope !== cap.scope) {
        throw new Error(`tasks '${other.task}' and '${task.name}' share concurrency group '${cap.group}' with different scopes (${other.scope}, ${cap.scope})`);
      }
      groups.set(cap.group, { limit: cap.limit, scope: cap.scope, task: task.name });
    }
    this.#tasks = new Map(sorted.map((task) => [task.name, task]));
  }

  names(): string[] {
    return [...this.#tasks.keys()];
  }

  all(): RegisteredTask[] {
    return [...this.#tasks.values()];
  }

  find(name: string): RegisteredTask | undefined {
    return this.#tasks.get(name);
  }

  /** The task, or an UnknownTaskError with a did-you-mean suggestion. */
  get(name: string): RegisteredTask {
    const task = this.#tasks.get(name);
    if (!task) throw new UnknownTaskError(name, this.suggest(name));
    return task;
  }

  /** The closest known name when it is near enough to be a typo. */
  suggest(name: string): string | undefined {
    const names = this.names();
    if (names.length === 0) return undefined;
    const candidate = closest(name, names);
    return distance(name, candidate) <= Math.max(2, Math.floor(candidate.length / 3)) ? candidate : undefined;
  }
}

/**
 * The order localeCompare gives snake_case names ('_' before digits before letters), without it:
 * its first call loads ICU's collation data, 4 MB of resident memory for the life of the process.
 */
function compareTaskNames(a: string, b: string): number {
  const [x, y] = [a.replaceAll("_", " "), b.replaceAll("_", " ")];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The longest time limit a timer holds (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Turns a task file's export into a registered task; throws naming the file when it is not one. */
export function registerTask(name: string, definition: unknown, source = name): RegisteredTask {
  if (!TASK_NAME.test(name)) throw new Error(`${source}: task names are snake_case (verb_object), got '${name}'`);
  if (!isTaskDefinition(definition)) {
    throw new Error(`${source}: the default export must be defineTask({ description, payload, run })`);
  }
  if (definition.name !== undefined && definition.name !== name) {
    throw new Error(`${source}: the definition names itself '${definition.name}', but its file makes it task '${name}'`);
  }
  const defaults = definition.defaults ?? {};
  const cap = defaults.concurrency;
  if (cap && !(Number.isInteger(cap.limit) && cap.limit >= 1 && cap.limit <= MAX_CAP)) {
    throw new Error(`${source}: defaults.concurrency.limit must be an integer from 1 to ${MAX_CAP}, got ${String(cap.limit)}`);
  }
  // The attempt's timer (setTimeout) would take anything else as 1 ms, with only a warning.
  if (defaults.timeoutMs !== undefined && !(Number.isInteger(defaults.timeoutMs) && defaults.timeoutMs >= 1 && defaults.timeoutMs <= MAX_TIMEOUT_MS)) {
    throw new Error(`${source}: defaults.timeoutMs must be an integer from 1 to ${MAX_TIMEOUT_MS}, got ${String(defaults.timeoutMs)}`);
  }
  if (cap?.scope !== undefined && cap.scope !== "global" && cap.scope !== "instance") {
    throw new Error(`${source}: defaults.concurrency.scope must be 'global' or 'instance', got '${String(cap.scope)}'`);
  }
  return {
    name,
    description: definition.description,
    schema: definition.payload,
    defaults: {
      maxAttempts: defaults.maxAttempts ?? DEFAULT_TASK_DEFAULTS.maxAttempts,
      queueName: defaults.queueName ?? DEFAULT_TASK_DEFAULTS.queueName,
      priority: defaults.priority ?? DEFAULT_TASK_DEFAULTS.priority,
      jobKey: (defaults.jobKey as ResolvedTaskDefaults["jobKey"]) ?? null,
      jobKeyMode: defaults.jobKeyMode ?? DEFAULT_TASK_DEFAULTS.jobKeyMode,
      timeoutMs: defaults.timeoutMs ?? DEFAULT_TASK_DEFAULTS.timeoutMs,
      concurrency: cap ? { limit: cap.limit, group: cap.group ?? name, scope: cap.scope ?? "global" } : null,
    },
    validate: compilePayloadValidator(definition.payload),
    run: definition.run,
    onExhausted: definition.onExhausted ?? null,
    sensitive: definition.sensitive ?? [],
    internal: definition.internal ?? false,
  };
}

/** Imports every task file in the folder (`.ts` in development, `.js` in the built image). */
export async function loadRegistry(directory = TASKS_DIRECTORY): Promise<TaskRegistry> {
  const files = (await readdir(directory)).filter((file) => /\.(ts|js)$/.test(file) && !/\.(d|test)\.ts$/.test(file));
  const tasks = await Promise.all(
    files.map(async (file) => {
      const fullPath = path.join(directory, file);
      const module = (await import(pathToFileURL(fullPath).href)) as { default?: unknown };
      return registerTask(path.basename(file, path.extname(file)), module.default, fullPath);
    }),
  );
  return new TaskRegistry(tasks);
}

function isTaskDefinition(value: unknown): value is TaskDefinition {
  if (!value || typeof value !== "object") return false;
  const candidate = value as Partial<TaskDefinition>;
  return (
    typeof candidate.description === "string" &&
    typeof candidate.run === "function" &&
    !!candidate.payload &&
    typeof candidate.payload === "object"
  );
}
