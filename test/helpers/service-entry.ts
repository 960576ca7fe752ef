/**
 * The service as src/main.ts starts it, plus the task files of test/fixtures/tasks (for example a
 * handler that blocks the event loop). Reliability tests and the chaos run start this as a child
 * process; SIGTERM and SIGINT shut it down as main.ts does.
 */
import { loadConfig } from "../../src/config.ts";
import { makeLogger } from "../../src/observability/logger.ts";
import { EXIT_GRACE_MS } from "../../src/reliability/shutdown.ts";
import { releaseStartupMemoryWhenReady, startService } from "../../src/service.ts";
import { loadRegistryWithFixtureTasks } from "./fixture-tasks.ts";

const config = loadConfig();
const logger = makeLogger(config.log);
try {
  const service = await startService(config, logger, { registry: await loadRegistryWithFixtureTasks() });
  const onSignal = () => {
    setTimeout(() => process.exit(1), config.reliability.shutdownTimeoutMs + EXIT_GRACE_MS).unref();
    service.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  releaseStartupMemoryWhenReady(service, logger);
} catch (error) {
  logger.fatal({ err: error }, `observing-jobs failed to start: ${(error as Error).message}`);
  logger.flush(() => process.exit(1));
}
