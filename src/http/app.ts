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
import { InvalidPayloadError } from "../enqueue.ts";
import { IllegalTransitionError, JobNotFoundError } from "../lifecycle/jobs.ts";
import { RequestLog } from "../observability/request-log.ts";
import { UnknownTaskError } from "../registry.ts";
import dashboardRoutes from "./dashboard/index.ts";
import type { AppDependencies } from "./dependencies.ts";
import { lazySerializerFactory, lazyValidatorCompiler } from "./lazy-schemas.ts";
import { authPlugin, makeAuthenticator, makeMetricsAuthenticator } from "./plugins/auth.ts";
import healthRoutes from "./routes/health.ts";
import jobRoutes from "./routes/jobs.ts";
import metricsRoutes from "./routes/metrics.ts";
import queueRoutes from "./routes/queues.ts";
import taskRoutes from "./routes/tasks.ts";
import { ErrorResponse } from "./schemas.ts";

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

/**
 * The status an error stands for. The lifecycle and enqueue errors know nothing of HTTP, so they
 * are mapped here, once; an HttpError or a Fastify error carries its own; anything else is a 500.
 */
function statusOf(error: Error & { statusCode?: number }): number {
  if (error instanceof JobNotFoundError || error instanceof UnknownTaskError) return 404;
  if (error instanceof IllegalTransitionError) return 409;
  if (error instanceof InvalidPayloadError) return 400;
  return error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
}

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

  app.setErrorHandler((error: Error & { statusCode?: number; code?: unknown }, request, reply) => {
    const statusCode = statusOf(error);
    if (statusCode >= 500) {
      request.log.error({ err: error }, "request failed");
      // Internals (stack traces, SQL, connection details, driver error codes) stay in the logs.
      return reply.status(statusCode).send({ statusCode, error: "Internal Server Error", message: "internal error" });
    }
    // A 409 says which state the job is in, so the caller can tell what would apply; Fastify's own
    // code (FST_ERR_VALIDATION, FST_ERR_CTP_INVALID_MEDIA_TYPE, ...) is what clients match on.
    const state = error instanceof IllegalTransitionError ? { state: error.state } : {};
    const code = typeof error.code === "string" ? { code: error.code } : {};
    return reply.status(statusCode).send({ statusCode, ...code, error: STATUS_NAMES[statusCode] ?? "Error", message: error.message, ...state });
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
    // Shared schemas keep their $id as their name (components.schemas.ErrorResponse, not def-0):
    // generated clients name their types after it.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, index) => (typeof json.$id === "string" ? json.$id : `def-${index}`) },
  });

  const authenticate = makeAuthenticator(deps.config.auth);
  await app.register(healthRoutes, { deps });
  await app.register(dashboardRoutes, { prefix: "/dashboard", deps, sources: deps.dashboardSources });
  await app.register(async (api) => {
    await api.register(authPlugin, { authenticate });
    await api.register(jobRoutes, { deps });
    await api.register(taskRoutes, { deps });
    await api.register(queueRoutes, { deps });
    api.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  });
  await app.register(async (scraped) => {
    await scraped.register(authPlugin, { authenticate: makeMetricsAuthenticator(deps.config.auth.metricsToken, authenticate) });
    await scraped.register(metricsRoutes, { deps });
  });
  return app;
}
