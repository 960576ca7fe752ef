/**
 * Service entry point (`npm start`, and the container's command). SIGTERM or SIGINT shuts down
 * gracefully (src/signals.ts).
 */
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { exitAfterLogs, makeLogger } from "./observability/logger.ts";
import { logStartFailure, releaseStartupMemoryWhenReady, startService } from "./service.ts";
import { stopOnSignals } from "./signals.ts";

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
}

const logger = makeLogger(config.log);
const starting = startService(config, logger);
stopOnSignals(starting, config, logger);
try {
  // Once ready, what loading the modules used, and no job or request will use again, goes back to the system.
  releaseStartupMemoryWhenReady(await starting, logger);
} catch (error) {
  logStartFailure(logger, error);
  exitAfterLogs(logger, 1);
}
