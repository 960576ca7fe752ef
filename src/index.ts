/**
 * observing-jobs as a library, for the app's other TypeScript services: enqueue jobs inside your
 * own Kysely transaction, typed by the task registry.
 *
 * ```ts
 * import { createJobClient } from "observing-jobs";
 * const jobs = await createJobClient();
 * await db.transaction().execute(async (trx) => {
 *   const { id } = await trx.insertInto("taxa").values({ scientific_name: "Puma concolor" }).returning("id").executeTakeFirstOrThrow();
 *   await jobs.enqueue(trx, "resolve_taxa", { taxonIds: [id] });
 * }); // rolled back: neither the row nor the job exists; committed: the job runs
 * ```
 */
import { enqueueJob, enqueueJobs, type AnyKysely } from "./enqueue.ts";
import { loadRegistry, TASKS_DIRECTORY, type TaskRegistry } from "./registry.ts";
import type { EnqueuedJob, EnqueueOptions } from "./task.ts";

export type { AnyKysely } from "./enqueue.ts";
export type { EnqueuedJob, EnqueueOptions } from "./task.ts";
export { InvalidPayloadError } from "./enqueue.ts";
export { UnknownTaskError } from "./registry.ts";

/** Task names and payload types, from the `GraphileWorker.Tasks` declarations in tasks/. */
export type TaskName = keyof GraphileWorker.Tasks;
export type TaskPayload<T extends TaskName> = GraphileWorker.Tasks[T];

export interface JobClient {
  registry: TaskRegistry;
  /** Enqueues one job through `graphile_worker.add_job` on `executor` (a Kysely instance or transaction). */
  enqueue<T extends TaskName>(executor: AnyKysely, task: T, payload: TaskPayload<T>, options?: EnqueueOptions): Promise<EnqueuedJob>;
  /** Enqueues many jobs of one task through `graphile_worker.add_jobs`, all-or-nothing inside a transaction. */
  enqueueMany<T extends TaskName>(executor: AnyKysely, task: T, payloads: ReadonlyArray<TaskPayload<T>>, options?: EnqueueOptions): Promise<EnqueuedJob[]>;
}

/** Loads the task registry once; payloads are checked against the task's schema at run time too. */
export async function createJobClient(options: { tasksDirectory?: string } = {}): Promise<JobClient> {
  const registry = await loadRegistry(options.tasksDirectory ?? TASKS_DIRECTORY);
  return {
    registry,
    enqueue: (executor, task, payload, enqueueOptions) => enqueueJob(executor, registry, task, payload, enqueueOptions, { source: "app" }),
    enqueueMany: (executor, task, payloads, enqueueOptions) =>
      enqueueJobs(executor, registry, task, payloads, enqueueOptions, { source: "app" }),
  };
}
