/**
 * "This job was enqueued with this payload", said once, as River's rivertest.RequireInserted says
 * it: the waiting jobs of one task, from graphile-worker's public `jobs` view with the payload the
 * service recorded for them (the view leaves payloads out), must be the ones the test expects.
 */
import { sql } from "kysely";
import { expect } from "vitest";
import type { Db } from "../../src/db/database.ts";

/** A job as it waits in the queue. */
export interface EnqueuedJobRow {
  id: string;
  /** As the task will receive it: defaults filled in, sensitive fields redacted. */
  payload: unknown;
  key: string | null;
  queue: string | null;
  priority: number;
  attempts: number;
  maxAttempts: number;
  runAt: Date;
}

/** What a test expects of a job; only the fields it names are compared (exactly, or with asymmetric matchers). */
export type ExpectedJob = Partial<Omit<EnqueuedJobRow, "id">>;

/** Exactly one job of `task` is waiting, and it is the one expected; returns it. */
export async function expectEnqueued(db: Db, task: string, expected: ExpectedJob = {}): Promise<EnqueuedJobRow> {
  const [job] = await expectEnqueuedMany(db, task, [expected]);
  return job!;
}

/** The waiting jobs of `task`, oldest first, are the ones expected, one for one; returns them. */
export async function expectEnqueuedMany(db: Db, task: string, expected: readonly ExpectedJob[]): Promise<EnqueuedJobRow[]> {
  const jobs = await enqueuedJobs(db, task);
  expect(
    jobs.map((job, index) => pick(job, Object.keys(expected[index] ?? {}) as Array<keyof ExpectedJob>)),
    `the waiting ${task} jobs`,
  ).toEqual(expected);
  return jobs;
}

function pick(job: EnqueuedJobRow, fields: ReadonlyArray<keyof ExpectedJob>): ExpectedJob {
  return Object.fromEntries(fields.map((field) => [field, job[field]]));
}

async function enqueuedJobs(db: Db, task: string): Promise<EnqueuedJobRow[]> {
  const { rows } = await sql<EnqueuedJobRow>`
    select job.id::text as id, record.payload, job.key, job.queue_name as queue, job.priority, job.attempts,
      job.max_attempts as "maxAttempts", job.run_at as "runAt"
    from graphile_worker.jobs job
    left join observing_jobs.job_records record on record.id = job.id
    where job.task_identifier = ${task}
    order by job.id`.execute(db);
  return rows;
}
