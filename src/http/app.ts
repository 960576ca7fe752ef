/**
 * The Fastify application: routes are plugins, every route has a schema (responses too), and one
 * error handler decides what a client may see. Health checks are open; everything else sits in a
 * scope behind authentication.
 */
import swagger from "@fastify/swagger";
import { Ajv } from "ajv";
import addFormats from "ajv-formats";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify from "fastify";
import type pg from "pg";
import type { Config } from "../config.ts";
import type { CrontabEntry } from "../crontab.ts";
import type { DashboardSources } from "../dashboard/sources.ts";
import type { Db } from "../db/database.ts";
import type { QueueStats } from "../lifecycle/queue-stats.ts";
import type { CronFreshness } from "../observability/cron-freshness.ts";
import type { ServiceMetrics } from "../observability/metrics.ts";
import { RequestLog } from "../observability/request-log.ts";
import metricsRoutes from "./routes/metrics.ts";
import type { Logger } from "../observability/logger.ts";
import type { TaskRegistry } from "../registry.ts";
import dashboardRoutes from "./dashboard/index.ts";
import { lazySerializerFactory, lazyValidatorCompiler } from "./lazy-schemas.ts";
import { authPlugin, makeAuthenticator } from "./plugins/auth.ts";
import healthRoutes from "./routes/health.ts";
import jobRoutes from "./routes/jobs.ts";
import queueRoutes from "./routes/queues.ts";
import taskRoutes from "./routes/tasks.ts";
import { ErrorResponse } from "./schemas.ts";

/** What the routes need from the running service. */
export interface AppDependencies {
  config: Pick<Config, "auth" | "http"> & Partial<Pick<Config, "dashboard">>;
  logger: Logger;
  pool: pg.Pool;
  db: Db;
  registry: TaskRegistry;
  crontab: readonly CrontabEntry[];
  queueStats: QueueStats;
  cronFreshness: CronFreshness;
  metrics: ServiceMetrics;
  worker: { isRunning(): boolean };
  /** Live worker pools and overdue cron entries for the dashboard; shown as not available when absent. */
  dashboardSources?: DashboardSources;
  /** Shutdown state and worker health beyond the database (src/reliability/readiness.ts); reported when given. */
  reliability?: ReliabilityProbe;
}

export interface ReliabilityProbe {
  shuttingDown(): boolean;
  checks(): Record<"listen" | "cron" | "heartbeat", { ok: boolean; detail?: string }>;
}

const STATUS_NAMES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
};

export type App = Awaited<ReturnType<typeof buildApp>>;

function makeAjv(options: { coerceTypes: boolean }): Ajv {
  const ajv = new Ajv({ ...options, allErrors: true, removeAdditional: false, useDefaults: true, strict: false });
  addFormats.default(ajv);
  return ajv;
}

export async function buildApp(deps: AppDependencies) {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: "http" }),
    logController: new RequestLog(),
    bodyLimit: deps.config.http.bodyLimitBytes,
    schemaController: { compilersFactory: { buildSerializer: lazySerializerFactory() } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies (task payloads) are validated as written: no coercion, no silent stripping, the way the
  // worker validates them. Query strings and path parameters arrive as text, so those are coerced.
  const bodies = makeAjv({ coerceTypes: false });
  const textParts = makeAjv({ coerceTypes: true });
  app.setValidatorCompiler(lazyValidatorCompiler((httpPart) => (httpPart === "body" ? bodies : textParts)));

  // The API speaks JSON only; a text/plain body is what a cross-site form or beacon would send.
  app.removeContentTypeParser("text/plain");

  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const statusCode = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
    if (statusCode >= 500) {
      request.log.error({ err: error }, "request failed");
      // Internals (stack traces, SQL, connection details) stay in the logs.
      return reply.status(statusCode).send({ statusCode, error: "Internal Server Error", message: "internal error" });
    }
    return reply.status(statusCode).send({ statusCode, error: STATUS_NAMES[statusCode] ?? "Error", message: error.message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ statusCode: 404, error: "Not Found", message: `no route ${request.method} ${request.url.split("?")[0]}` }),
  );

  app.addSchema(ErrorResponse);
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "observing-jobs",
        version: "0.1.0",
        description: "Durable jobs for the biodiversity-observations app: trigger, inspect and act on them.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "Google-signed ID token, or a static API token" } } },
      security: [{ bearer: [] }],
    },
  });

  await app.register(healthRoutes, { deps });
  await app.register(dashboardRoutes, { prefix: "/dashboard", deps, sources: deps.dashboardSources });
  await app.register(async (api) => {
    await api.register(authPlugin, { authenticate: makeAuthenticator(deps.config.auth) });
    await api.register(jobRoutes, { deps });
    await api.register(taskRoutes, { deps });
    await api.register(queueRoutes, { deps });
    await api.register(metricsRoutes, { deps });
    api.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  });
  return app;
}
