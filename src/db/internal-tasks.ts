/**
 * The list of internal tasks the database refuses to the enqueue-only role (migration
 * 0011_internal_tasks). The task files say which tasks are internal; every start of the service
 * writes that list, in one statement, so the database's check follows the code.
 */
import { sql } from "kysely";
import type { TaskRegistry } from "../registry.ts";
import type { Db } from "./database.ts";

export async function recordInternalTasks(db: Db, registry: TaskRegistry): Promise<void> {
  const names = registry.all().filter((task) => task.internal).map((task) => task.name);
  await sql`
    with wanted as (select unnest(${names}::text[]) as identifier),
    removed as (delete from observing_jobs.internal_tasks where identifier <> all(${names}::text[]))
    insert into observing_jobs.internal_tasks (identifier) select identifier from wanted on conflict do nothing`.execute(db);
}
