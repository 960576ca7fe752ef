/**
 * Opens the job database for the service and the CLI alike: DATABASE_URL when set, otherwise the
 * embedded PostgreSQL (never in production; config refuses that). Connections carry the time
 * limits of DATABASE_*_TIMEOUT_MS and TCP keepalive (src/db/database.ts).
 */
import type { Config } from "../config.ts";
import type { Logger } from "../observability/logger.ts";
import { makeDatabase, type ConnectionSettings, type DatabaseHandle } from "./database.ts";
import { startEmbeddedPostgres } from "./embedded-postgres.ts";

export interface ConnectedDatabase extends DatabaseHandle {
  /** True when this process runs on the embedded PostgreSQL. */
  embedded: boolean;
  /** The connection string in use (secret: it may carry a password). */
  url: string;
}

export interface ConnectOptions {
  /** Overrides DATABASE_STATEMENT_TIMEOUT_MS; null for none (operator commands such as migrations). */
  statementTimeoutMs?: number | null;
}

/** The connection settings of the configuration. */
export function connectionSettings(config: Config, options: ConnectOptions = {}): ConnectionSettings {
  const { timeouts } = config.database;
  return {
    connectTimeoutMs: timeouts.connectTimeoutMs,
    statementTimeoutMs: options.statementTimeoutMs === undefined ? timeouts.statementTimeoutMs : options.statementTimeoutMs,
    idleInTransactionTimeoutMs: options.statementTimeoutMs === null ? null : timeouts.idleInTransactionTimeoutMs,
    keepAliveIdleMs: timeouts.keepAliveIdleMs,
  };
}

export async function connectDatabase(config: Config, logger: Logger, maxConnections: number, options: ConnectOptions = {}): Promise<ConnectedDatabase> {
  const settings = connectionSettings(config, options);
  if (config.database.url) {
    return { ...makeDatabase(config.database.url, { maxConnections, logger, settings }), embedded: false, url: config.database.url };
  }
  const server = await startEmbeddedPostgres({ ...config.database.embedded, logger });
  try {
    const handle = makeDatabase(server.url, { maxConnections, logger, settings });
    return {
      ...handle,
      embedded: true,
      url: server.url,
      async close() {
        try {
          await handle.close();
        } finally {
          await server.stop();
        }
      },
    };
  } catch (error) {
    await server.stop();
    throw error;
  }
}
