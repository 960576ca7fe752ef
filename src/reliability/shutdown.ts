/**
 * Shutdown tuned to Cloud Run, which sends SIGTERM and kills the instance about 10 s later:
 *
 *   t = 0                        SIGTERM: readiness answers 503 "shutting down"; runners fetch no new
 *                                jobs; cron stops; heartbeats go on (the instance is alive)
 *   t < SHUTDOWN_ABORT_AFTER_MS  running jobs may finish normally
 *   t = SHUTDOWN_ABORT_AFTER_MS  the jobs' abort signal fires; each attempt fails at once with
 *                                TaskInterruptedError, even if its handler ignores the signal
 *   t = SHUTDOWN_TIMEOUT_MS      pools still not stopped are shut down forcefully
 *   as each pool ends            its unfinished jobs are returned to the queue at their old place
 *                                (their original run_at), with the interrupted attempt given back
 *                                and a `rescued` event (actor "shutdown"); jobs still locked by it
 *                                are force-unlocked; its heartbeat row becomes `stopped`
 *                                (pool-settlement.ts)
 *   then                         HTTP closes, the database pool closes
 *   t = SHUTDOWN_TIMEOUT_MS + 1 s  the process exits, finished or not (main.ts)
 */

/** How long after the shutdown deadline the process exits regardless. */
export const EXIT_GRACE_MS = 1000;
