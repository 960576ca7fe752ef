/**
 * When each scheduled task last ran from the crontab, and last succeeded, from job history. Both
 * read only the task's cron jobs through 0007's partial index, however many other jobs it has.
 */
import type { Db } from "../db/database.ts";

export interface CronRun {
  jobId: string;
  phase: string;
  createdAt: Date;
  finishedAt: Date | null;
}

export interface CronRuns {
  lastRun: CronRun | null;
  lastSuccess: CronRun | null;
}

export async function findCronRuns(db: Db, task: string): Promise<CronRuns> {
  const newest = (phase?: "succeeded") => {
    let query = db
      .selectFrom("observing_jobs.job_records")
      .select(["id", "phase", "created_at", "finished_at"])
      .where("task", "=", task)
      .where("source", "=", "cron");
    if (phase) query = query.where("phase", "=", phase);
    return query.orderBy("id", "desc").limit(1).executeTakeFirst();
  };
  const [run, success] = await Promise.all([newest(), newest("succeeded")]);
  const toRun = (row: typeof run): CronRun | null =>
    row ? { jobId: String(row.id), phase: row.phase, createdAt: row.created_at, finishedAt: row.finished_at } : null;
  return { lastRun: toRun(run), lastSuccess: toRun(success) };
}
