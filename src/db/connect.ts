/**
 * Opens the job database for the service and the CLI alike: DATABASE_URL when set, otherwise the
 * embedded PostgreSQL (never in production; config refuses that).
 */
import type { Config } from "../config.ts";
import type { Logger } from "../observability/logger.ts";
import { makeDatabase, type DatabaseHandle } from "./database.ts";
import { startEmbeddedPostgres } from "./embedded-postgres.ts";

export interface ConnectedDatabase extends DatabaseHandle {
  /** True when this process runs on the embedded PostgreSQL. */
  embedded: boolean;
}

export async function connectDatabase(config: Config, logger: Logger, maxConnections: number): Promise<ConnectedDatabase> {
  if (config.database.url) {
    return { ...makeDatabase(config.database.url, { maxConnections, logger }), embedded: false };
  }
  const server = await startEmbeddedPostgres({ ...config.database.embedded, logger });
  try {
    const handle = makeDatabase(server.url, { maxConnections, logger });
    return {
      ...handle,
      embedded: true,
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
