/**
 * Service entry point (`npm start`, and the container's command). SIGTERM or SIGINT shuts down
 * gracefully within the shutdown deadlines (see src/reliability/shutdown.ts); a second signal exits
 * at once.
 */
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { makeLogger } from "./observability/logger.ts";
import { EXIT_GRACE_MS } from "./reliability/shutdown.ts";
import { startService } from "./service.ts";
import { shutdownTelemetry } from "./observability/telemetry.ts";

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
}

const logger = makeLogger(config.log);
try {
  const service = await startService(config, logger);
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, "second signal: exiting without waiting for running jobs");
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, "shutting down: no new jobs, waiting for running jobs");
    // Cloud Run kills the instance ~10 s after SIGTERM; exit first, whatever is still pending.
    setTimeout(() => {
      logger.error("shutdown took longer than its deadline: exiting now");
      process.exit(1);
    }, config.reliability.shutdownTimeoutMs + EXIT_GRACE_MS).unref();
    service
      .stop()
      .then(() => shutdownTelemetry())
      .then(
        () => {
          logger.info("shut down cleanly");
          // Flushed first: exiting with a write in flight can print the last lines out of order.
          logger.flush(() => process.exit(0));
        },
        (error: unknown) => {
          logger.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
} catch (error) {
  logger.fatal({ err: error }, `observing-jobs failed to start: ${(error as Error).message}`);
  logger.flush(() => process.exit(1));
}
