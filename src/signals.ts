/**
 * How an entry point (the service, the demo) ends: SIGTERM or SIGINT shuts the service down
 * gracefully within the shutdown deadlines (see src/reliability/shutdown.ts); a second signal
 * exits within EXIT_NOW_FLUSH_MS, with code 1.
 */
import type { Config } from "./config.ts";
import { exitAfterLogs, type Logger } from "./observability/logger.ts";
import { shutdownTelemetry } from "./observability/telemetry.ts";
import { EXIT_GRACE_MS } from "./reliability/shutdown.ts";
import type { Service } from "./service.ts";

/** How long an exit that cannot wait (a second signal, a missed deadline) gives its last lines. */
const EXIT_NOW_FLUSH_MS = 200;

/**
 * Installed before the service starts, so that a signal during start-up (Ctrl-C while the embedded
 * PostgreSQL initialises) still ends in a clean stop once the start has finished. `afterStop` runs
 * once the service has stopped, before the process exits (the demo stops its fakes).
 */
export function stopOnSignals(starting: Promise<Service>, config: Config, logger: Logger, afterStop: () => Promise<void> = async () => {}): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, "second signal: exiting without waiting for running jobs");
      return exitAfterLogs(logger, 1, EXIT_NOW_FLUSH_MS);
    }
    signalled = true;
    logger.info({ signal }, "shutting down: no new jobs, waiting for running jobs");
    starting.then(
      (service) => {
        // Cloud Run kills the instance ~10 s after SIGTERM; exit first, whatever is still pending.
        // Counted from the end of start-up: a start still under way (initdb) is let finish.
        const budgetMs = config.reliability.shutdownTimeoutMs + EXIT_GRACE_MS;
        const exitBy = performance.now() + budgetMs;
        const deadline = setTimeout(() => {
          logger.error("shutdown took longer than its deadline: exiting now");
          exitAfterLogs(logger, 1, EXIT_NOW_FLUSH_MS);
        }, budgetMs).unref();
        // The last lines are written within what is left of the budget.
        const exitWithLogs = (code: number) => {
          clearTimeout(deadline);
          exitAfterLogs(logger, code, Math.max(EXIT_NOW_FLUSH_MS, exitBy - performance.now()));
        };
        return service
          .stop()
          .then(() => afterStop())
          .then(() => shutdownTelemetry())
          .then(
            () => {
              logger.info("shut down cleanly");
              exitWithLogs(0);
            },
            (error: unknown) => {
              logger.error({ err: error }, "shutdown failed");
              exitWithLogs(1);
            },
          );
      },
      () => {}, // the start failed: the entry point says why and exits
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
