import { sql, type Kysely } from "kysely";
import { FENCE_RUNNER_COMPLETION, fenceTriggers, LOCKED_TABLES } from "./0010_job_fencing.ts";
import { fenceRunnerLock } from "./0015_fence_waits_for_sweeper.ts";

/**
 * Frozen in time. The fences of 0010 and 0015 called a plpgsql function for every row a runner
 * fetched or completed, each looking up the pool's heartbeat row: measured in a drain of 20,000
 * jobs, ~6 µs per job fetched and ~5 µs per job completed. Within one transaction the answer does
 * not change, so each fence now remembers it for the rest of the transaction, in a
 * transaction-local setting (gone at commit or rollback), and the trigger's WHEN lets the
 * transaction's other rows of the same pool go without the call:
 *
 * - The fetch fence asks whether this session's pool is live, and holds its heartbeat row FOR SHARE
 *   until the fetch commits (0015): the sweeper's update of that row waits for the lock, so the pool
 *   stays live until the transaction ends. `observing_jobs.live_pool` remembers it, and the rest of
 *   the fetch (the batch's other jobs, their named queues) is locked without the call.
 * - The completion fence asks whether the job is still locked by this session's pool (a session's
 *   pool never changes). `observing_jobs.fenced_pool` remembers the pool once a row has passed, and
 *   the batch's other jobs locked by it are deleted without the call (graphile-worker completes a
 *   batch in one statement, or two when it mixes jobs with and without a named queue).
 *
 * What is remembered is the session's name with the pool, and the WHEN lets a row through only when
 * both are equal to it: a row locked by anyone else, or by nobody (released by the sweeper; a null
 * compares as unknown, which calls the function), on a connection that has remembered nothing yet,
 * or after application_name changed, still calls the function and is refused (and a completion
 * recorded) as before. Transaction-local rather than for the session: behind PgBouncer in
 * transaction mode one server connection serves many clients in turn, each with its own
 * application_name, and a session setting would carry one runner's pool over to the next (a stale
 * completion let through, found in review). Anyone who can set these settings on a runner's
 * connection can pass the fences, as anyone can name a connection as a runner's: the fences stop the
 * service's own stale pools, not a hostile client with database access.
 */

// Where each fence, once its check has passed, remembers the answer for the rest of the transaction.
const REMEMBERED: Array<[name: string, definition: () => string, passed: string, remember: string]> = [
  [
    "fence_runner_completion",
    () => FENCE_RUNNER_COMPLETION.replace("create function", "create or replace function"),
    "      ) then\n        return old;\n",
    "      ) then\n        -- This session's pool: the trigger's WHEN lets the transaction's other jobs it holds through.\n" +
      "        perform set_config('observing_jobs.fenced_pool', session || ' ' || old.locked_by, true);\n        return old;\n",
  ],
  [
    "fence_runner_lock",
    fenceRunnerLock,
    "      ) then\n        return new;\n",
    "      ) then\n        -- Live until this transaction ends (its heartbeat row is held): the trigger's WHEN lets its other locks through.\n" +
      "        perform set_config('observing_jobs.live_pool', current_setting('application_name') || ' ' || new.locked_by, true);\n        return new;\n",
  ],
];

function rememberingFunctions(): string[] {
  return REMEMBERED.map(([name, definition, passed, remember]) => {
    const previous = definition();
    if (!previous.includes(passed)) throw new Error(`0022: the ${name} before this migration is not the one it changes`);
    return previous.replace(passed, remember);
  });
}

/** 0010's triggers, each with the condition that skips the call once the answer is known. */
const REMEMBERING_CONDITIONS: Array<[trigger: string, before: string, after: string]> = [
  [
    "observing_jobs_fence_completion",
    "for each row when (starts_with(current_setting('application_name'), 'observing-jobs runner '))",
    "for each row when (starts_with(current_setting('application_name'), 'observing-jobs runner ')\n      and not coalesce(current_setting('application_name') || ' ' || old.locked_by = current_setting('observing_jobs.fenced_pool', true), false))",
  ],
  [
    "observing_jobs_fence_lock",
    "and starts_with(current_setting('application_name'), 'observing-jobs runner '))",
    "and starts_with(current_setting('application_name'), 'observing-jobs runner ')\n      and not coalesce(current_setting('application_name') || ' ' || new.locked_by = current_setting('observing_jobs.live_pool', true), false))",
  ],
];

function rememberingTriggers(): string[] {
  return fenceTriggers().map((trigger) => {
    const change = REMEMBERING_CONDITIONS.find(([name]) => trigger.includes(`create trigger ${name} `));
    if (!change || !trigger.includes(change[1])) throw new Error(`0022: 0010's fence trigger is not the one this migration changes: ${trigger.trim()}`);
    return trigger.replace(change[1], change[2]);
  });
}

async function replaceTriggers(db: Kysely<unknown>, triggers: string[]): Promise<void> {
  for (const table of LOCKED_TABLES) {
    await sql.raw(`drop trigger observing_jobs_fence_lock on graphile_worker.${table}`).execute(db);
  }
  await sql`drop trigger observing_jobs_fence_completion on graphile_worker._private_jobs`.execute(db);
  for (const trigger of triggers) await sql.raw(trigger).execute(db);
}

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const definition of rememberingFunctions()) await sql.raw(definition).execute(db);
  await replaceTriggers(db, rememberingTriggers());
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await replaceTriggers(db, fenceTriggers());
  await sql.raw(FENCE_RUNNER_COMPLETION.replace("create function", "create or replace function")).execute(db);
  await sql.raw(fenceRunnerLock()).execute(db);
}
