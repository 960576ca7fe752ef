import { sql, type Kysely } from "kysely";

/**
 * Frozen in time. Internal tasks (prune_job_history, ...) cannot be added by a caller that may not
 * write graphile-worker's jobs table itself: the enqueuers of src/db/roles.ts, which may only call
 * add_job / add_jobs. Those functions run as their owner (SECURITY DEFINER), so the check looks at
 * the login role (session_user): a role without INSERT on the jobs table gets an error naming the
 * task. The service's runtime role and the migrator have that privilege and are not affected; nor
 * is anyone on a database without roles (development, tests: a superuser).
 *
 * The list of internal tasks is kept by the service (src/db/internal-tasks.ts writes it at every
 * start from the task files); prune_job_history is seeded here so the check holds before that.
 * Cost: for the runtime's and the migrator's inserts, one privilege check in the WHEN clause per row.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create table observing_jobs.internal_tasks (identifier text primary key)`.execute(db);
  await sql`insert into observing_jobs.internal_tasks (identifier) values ('prune_job_history')`.execute(db);
  await sql`
    create function observing_jobs.refuse_internal_task() returns trigger language plpgsql as $$
    declare
      task text;
    begin
      select t.identifier into task
      from graphile_worker._private_tasks t join observing_jobs.internal_tasks i on i.identifier = t.identifier
      where t.id = new.task_id;
      if task is not null then
        raise exception 'task % is internal: it runs from the crontab or the service itself, and % may not add it', task, session_user
          using errcode = 'insufficient_privilege', hint = 'internal tasks cannot be enqueued by the enqueue-only role';
      end if;
      return new;
    end
    $$`.execute(db);
  await sql`
    create trigger observing_jobs_internal_tasks before insert on graphile_worker._private_jobs
    for each row when (not has_table_privilege(session_user, 'graphile_worker._private_jobs'::regclass, 'INSERT'))
    execute function observing_jobs.refuse_internal_task()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger if exists observing_jobs_internal_tasks on graphile_worker._private_jobs`.execute(db);
  await sql`drop function if exists observing_jobs.refuse_internal_task()`.execute(db);
  await sql`drop table if exists observing_jobs.internal_tasks`.execute(db);
}
