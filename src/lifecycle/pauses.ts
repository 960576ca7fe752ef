/**
 * Pausing and resuming: what a pause holds back, which names may be paused, and the one way the
 * API, the dashboard and the CLI pause and resume (recorded with who did it). The runners' side,
 * honouring a pause within about a second, is src/worker/pause-gate.ts.
 *
 * A pause stops new attempts only: running attempts finish, and jobs keep being added and wait.
 * - a task: every job of that task;
 * - a named queue: every job in that queue, whatever its task;
 * - a cap group (`defaults.concurrency.group`): every job of every task in the group.
 */
import { sql } from "kysely";
import { closest, distance } from "fastest-levenshtein";
import type { Db } from "../db/database.ts";
import { findPauses, recordPause, recordResume, type Pause, type PauseKind } from "../db/repositories/pauses.ts";
import type { RegisteredTask, TaskRegistry } from "../registry.ts";
import { sanitizeText } from "../storable-text.ts";

export { PAUSE_KINDS, type Pause, type PauseKind } from "../db/repositories/pauses.ts";

/** The longest reason kept with a pause. */
export const PAUSE_REASON_MAX_CHARS = 500;

/** A name that is not a task, group or queue this service knows (HTTP 404, CLI exit 2). */
export class UnknownPauseTargetError extends Error {
  override name = "UnknownPauseTargetError";
  constructor(kind: PauseKind, name: string, suggestion: string | undefined) {
    const what = kind === "group" ? "cap group" : kind;
    super(`unknown ${what} '${name}'${suggestion ? ` (did you mean '${suggestion}'?)` : ""}`);
  }
}

/** The cap groups of the registry's tasks. */
export function capGroups(registry: TaskRegistry): string[] {
  return [...new Set(registry.all().flatMap((task) => (task.defaults.concurrency ? [task.defaults.concurrency.group] : [])))].sort();
}

/** The pause that holds back a job of `task` in `queue`, if any: the task's own, its group's, then its queue's. */
export function pauseHolding(pauses: readonly Pause[], task: RegisteredTask, queue: string | null): Pause | undefined {
  const group = task.defaults.concurrency?.group;
  return (
    pauses.find((pause) => pause.kind === "task" && pause.name === task.name) ??
    (group ? pauses.find((pause) => pause.kind === "group" && pause.name === group) : undefined) ??
    (queue ? pauses.find((pause) => pause.kind === "queue" && pause.name === queue) : undefined)
  );
}

/** One line for logs, history and the dashboard: "task 'resolve_taxa' is paused (by alice since …: GBIF is down)". */
export function describePause(pause: Pause): string {
  const what = pause.kind === "group" ? "cap group" : pause.kind;
  return `${what} '${pause.name}' is paused (by ${pause.pausedBy} since ${pause.pausedAt.toISOString()}${pause.reason ? `: ${pause.reason}` : ""})`;
}

/**
 * Checks that `name` is a task, cap group or queue this service knows: queues are the tasks'
 * default queues and those that jobs are waiting in now (a job may be enqueued into any queue).
 */
export async function checkPauseTarget(db: Db, registry: TaskRegistry, kind: PauseKind, name: string): Promise<void> {
  let known: string[];
  if (kind === "task") known = registry.names();
  else if (kind === "group") known = capGroups(registry);
  else {
    const defaults = registry.all().flatMap((task) => (task.defaults.queueName ? [task.defaults.queueName] : []));
    if (defaults.includes(name)) return;
    const { rows: waiting } = await sql<{ found: boolean }>`select exists (select 1 from graphile_worker.jobs where queue_name = ${name}) as found`.execute(db);
    if (waiting[0]?.found) return;
    // Unknown: the names to suggest from (read only on this rare path).
    const { rows } = await sql<{ queue_name: string }>`select distinct queue_name from graphile_worker.jobs where queue_name is not null`.execute(db);
    known = [...new Set([...defaults, ...rows.map((row) => row.queue_name)])];
  }
  if (known.includes(name)) return;
  throw new UnknownPauseTargetError(kind, name, suggest(name, known));
}

function suggest(name: string, names: string[]): string | undefined {
  if (names.length === 0) return undefined;
  const candidate = closest(name, names);
  return distance(name, candidate) <= Math.max(2, Math.floor(candidate.length / 3)) ? candidate : undefined;
}

/** Who and why, as recorded: text PostgreSQL stores, the reason bounded. */
function recordable(actor: string, reason: string | undefined | null) {
  const trimmed = reason?.trim();
  return { actor: sanitizeText(actor), reason: trimmed ? sanitizeText(trimmed.slice(0, PAUSE_REASON_MAX_CHARS)) : null };
}

/** Pauses a known task, group or queue (idempotent: an existing pause is kept as it was). */
export async function pause(db: Db, registry: TaskRegistry, kind: PauseKind, name: string, by: string, reason?: string | null): Promise<{ pause: Pause; created: boolean }> {
  await checkPauseTarget(db, registry, kind, name);
  const who = recordable(by, reason);
  return await recordPause(db, kind, name, who.actor, who.reason);
}

/**
 * Resumes it (idempotent: null when it was not paused). A name that is paused is always resumable,
 * even when no task knows it any more (a task removed by a deploy while paused).
 */
export async function resume(db: Db, registry: TaskRegistry, kind: PauseKind, name: string, by: string, reason?: string | null): Promise<Pause | null> {
  const paused = (await findPauses(db)).some((pause) => pause.kind === kind && pause.name === name);
  if (!paused) await checkPauseTarget(db, registry, kind, name);
  const who = recordable(by, reason);
  return await recordResume(db, kind, name, who.actor, who.reason);
}
