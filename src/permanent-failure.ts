/**
 * A failure no retry can fix. Throw it (or a subclass) from a task when the job cannot succeed
 * however often it runs: a setting is missing, an upstream refuses the request in a way that will
 * not change. The job then dies at once with the reason as its last error, without spending its
 * remaining attempts (src/worker/job-control.ts), and waits in the dead-letter for an operator.
 * A leaf module, so task files, upstream clients and the worker can all use it.
 */
export class PermanentJobError extends Error {
  override name = "PermanentJobError";
}
