/**
 * The pauses table and its history (migration 0017_pauses). Writes are idempotent: pausing what is
 * paused keeps the first pause (its author, time and reason) and records nothing; resuming what is
 * not paused records nothing either. Every change notifies the instances through the table's trigger.
 */
import { sql } from "kysely";
import type { Db } from "../database.ts";

/** What can be paused: a task, a named queue, or a cap group (`defaults.concurrency.group`). */
export const PAUSE_KINDS = ["task", "queue", "group"] as const;
export type PauseKind = (typeof PAUSE_KINDS)[number];

export interface Pause {
  kind: PauseKind;
  name: string;
  pausedBy: string;
  reason: string | null;
  pausedAt: Date;
}

export interface PauseEvent {
  kind: PauseKind;
  name: string;
  action: "paused" | "resumed";
  actor: string;
  reason: string | null;
  at: Date;
}

interface PauseRow {
  kind: PauseKind;
  name: string;
  paused_by: string;
  reason: string | null;
  paused_at: Date;
}

const toPause = (row: PauseRow): Pause => ({ kind: row.kind, name: row.name, pausedBy: row.paused_by, reason: row.reason, pausedAt: row.paused_at });

/** Everything paused now, by kind and name. */
export async function findPauses(db: Db): Promise<Pause[]> {
  const { rows } = await sql<PauseRow>`select kind, name, paused_by, reason, paused_at from observing_jobs.pauses order by kind, name`.execute(db);
  return rows.map(toPause);
}

/** Pauses `kind`/`name` unless it is paused already; the pause in force either way, and whether this call made it. */
export async function recordPause(db: Db, kind: PauseKind, name: string, actor: string, reason: string | null): Promise<{ pause: Pause; created: boolean }> {
  const { rows } = await sql<PauseRow & { created: boolean }>`
    with inserted as (
      insert into observing_jobs.pauses (kind, name, paused_by, reason) values (${kind}, ${name}, ${actor}, ${reason})
      on conflict (kind, name) do nothing
      returning kind, name, paused_by, reason, paused_at
    ), event as (
      insert into observing_jobs.pause_events (kind, name, action, actor, reason)
      select kind, name, 'paused', paused_by, reason from inserted
    )
    select *, true as created from inserted
    union all
    select kind, name, paused_by, reason, paused_at, false from observing_jobs.pauses
    where kind = ${kind} and name = ${name} and not exists (select 1 from inserted)`.execute(db);
  const row = rows[0]!;
  return { pause: toPause(row), created: row.created };
}

/** Resumes `kind`/`name`; the pause it ended, or null when it was not paused. */
export async function recordResume(db: Db, kind: PauseKind, name: string, actor: string, reason: string | null): Promise<Pause | null> {
  const { rows } = await sql<PauseRow>`
    with deleted as (
      delete from observing_jobs.pauses where kind = ${kind} and name = ${name}
      returning kind, name, paused_by, reason, paused_at
    ), event as (
      insert into observing_jobs.pause_events (kind, name, action, actor, reason)
      select kind, name, 'resumed', ${actor}, ${reason} from deleted
    )
    select * from deleted`.execute(db);
  return rows[0] ? toPause(rows[0]) : null;
}

/** The latest pause and resume events, newest first (of one kind and name, when given). */
export async function findPauseEvents(db: Db, limit: number, of?: { kind: PauseKind; name: string }): Promise<PauseEvent[]> {
  const { rows } = await sql<PauseEvent>`
    select kind, name, action, actor, reason, at from observing_jobs.pause_events
    where ${of ? sql`kind = ${of.kind} and name = ${of.name}` : sql`true`}
    order by id desc limit ${limit}`.execute(db);
  return rows;
}
