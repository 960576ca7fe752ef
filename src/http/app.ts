/**
 * The Fastify application: routes are plugins, every route has a schema (responses too), and one
 * error handler decides what a client may see.
 */
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify from "fastify";
import type pg from "pg";
import type { Db } from "../db/database.ts";
import type { Logger } from "../observability/logger.ts";
import type { TaskRegistry } from "../registry.ts";
import healthRoutes from "./routes/health.ts";

/** What the routes need from the running service. */
export interface AppDependencies {
  logger: Logger;
  pool: pg.Pool;
  db: Db;
  registry: TaskRegistry;
  worker: { isRunning(): boolean };
  /** Shutdown state and worker health beyond the database (src/reliability/readiness.ts); reported when given. */
  reliability?: ReliabilityProbe;
}

export interface ReliabilityProbe {
  shuttingDown(): boolean;
  checks(): Record<"listen" | "cron" | "heartbeat", { ok: boolean; detail?: string }>;
}

export type App = Awaited<ReturnType<typeof buildApp>>;

export async function buildApp(deps: AppDependencies) {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: "http" }),
    bodyLimit: 256 * 1024,
    // Payloads are validated against task schemas as written: no coercion, no silent stripping.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setErrorHandler((error: Error & { statusCode?: number; validation?: unknown }, request, reply) => {
    const statusCode = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
    if (statusCode >= 500) {
      request.log.error({ err: error }, "request failed");
      // Internals (stack traces, SQL, connection details) stay in the logs.
      return reply.status(statusCode).send({ statusCode, error: "Internal Server Error", message: "internal error" });
    }
    return reply.status(statusCode).send({ statusCode, error: httpErrorName(statusCode), message: error.message });
  });

  await app.register(healthRoutes, { deps });
  return app;
}

function httpErrorName(statusCode: number): string {
  return (
    {
      400: "Bad Request",
      401: "Unauthorized",
      403: "Forbidden",
      404: "Not Found",
      409: "Conflict",
      413: "Payload Too Large",
      415: "Unsupported Media Type",
      429: "Too Many Requests",
    }[statusCode] ?? "Error"
  );
}
