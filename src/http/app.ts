/**
 * The Fastify application: routes are plugins, every route has a schema (responses too), and one
 * error handler decides what a client may see. Health checks are open; everything else sits in a
 * scope behind authentication.
 */
import swagger from "@fastify/swagger";
import { Ajv, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyReply } from "fastify";
import type { FastifySchemaValidationError } from "fastify/types/schema.js";
import { findUnstorableText, useStorableDateTimes } from "../input-limits.ts";
import { IllegalTransitionError } from "../lifecycle/jobs.ts";
import { RequestLog } from "../observability/request-log.ts";
import { ASSETS } from "./dashboard/assets.ts";
import { clientErrorOf, loggableError } from "./database-errors.ts";
import { statusOf } from "./errors.ts";
import dashboardRoutes from "./dashboard/index.ts";
import type { AppDependencies } from "./dependencies.ts";
import { lazySerializerFactory } from "./lazy-schemas.ts";
import { authPlugin, makeAuthenticator, makeMetricsAuthenticator } from "./plugins/auth.ts";
import healthRoutes from "./routes/health.ts";
import jobRoutes from "./routes/jobs.ts";
import metricsRoutes from "./routes/metrics.ts";
import pauseRoutes from "./routes/pauses.ts";
import queueRoutes from "./routes/queues.ts";
import taskRoutes from "./routes/tasks.ts";
import { registerRateLimit } from "./rate-limit.ts";
import { ErrorResponse, NoQuery, OPTIONAL_BODY } from "./schemas.ts";

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

/**
 * The longest path parameter the router passes to a route, in UTF-16 units after decoding: a pause
 * names a queue of up to 200 characters (Fastify's default of 100 refused queues an enqueue accepts).
 */
const MAX_PATH_PARAMETER_CHARS = 256;

/** URLs the router refuses before any route runs, by Fastify's code, with what the caller is told. */
const ROUTER_REFUSALS: Record<string, string> = {
  FST_ERR_BAD_URL: "the URL is not valid (malformed percent-encoding)",
  FST_ERR_MAX_PARAM_LENGTH: `a path segment is longer than ${MAX_PATH_PARAMETER_CHARS} characters`,
};

/** Headers of every answer: nothing is to be sniffed as another type or kept by a cache on the way. */
function setResponseHeaders(reply: FastifyReply): void {
  reply.header("x-content-type-options", "nosniff");
  if (!reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
  // JSON has no charset parameter (RFC 8259 §11); the documented media type is exactly this.
  if (String(reply.getHeader("content-type") ?? "").startsWith("application/json")) reply.header("content-type", "application/json");
}

interface OpenApiDocument {
  paths?: Record<string, Record<string, { requestBody?: { required?: boolean }; [OPTIONAL_BODY]?: boolean }>>;
}

/**
 * @fastify/swagger marks every request body required; an operation whose route says its body may
 * be left out (OPTIONAL_BODY) says so in the document too.
 */
function markOptionalBodies<T extends OpenApiDocument>(document: T): T {
  for (const operations of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(operations)) {
      if (!operation[OPTIONAL_BODY]) continue;
      delete operation[OPTIONAL_BODY];
      if (operation.requestBody) operation.requestBody.required = false;
    }
  }
  return document;
}

function makeAjv(): Ajv {
  const ajv = new Ajv({ coerceTypes: false, allErrors: true, removeAdditional: false, useDefaults: true, strict: false });
  addFormats.default(ajv);
  useStorableDateTimes(ajv);
  return ajv;
}

type HttpPart = "body" | "querystring" | "params" | "headers";
type CheckedValidator = ((data: unknown, context?: unknown) => boolean) & { errors?: FastifySchemaValidationError[] | null; schemaEnv?: unknown };

/**
 * A route part's validator: text PostgreSQL cannot store is refused first (naming the field, as
 * any validation error does), query-string integers are read only when written as plain decimals
 * (no `0x10`, `1e1`, `+7`: ajv's own coercion would take those), then the schema decides.
 */
function compileValidator(ajv: Ajv, schema: object, httpPart: HttpPart): CheckedValidator {
  // Compiled on the route's first request, not at start-up (src/http/lazy-schemas.ts says why).
  let compiled: ValidateFunction | undefined;
  const validator = () => (compiled ??= ajv.compile(schema));
  const integers = httpPart === "querystring" ? integerProperties(schema) : [];
  const checked: CheckedValidator = (data, context) => {
    const problem = findUnstorableText(data);
    if (problem) {
      checked.errors = [{ keyword: "text", instancePath: problem.path, schemaPath: "#", params: {}, message: problem.message }];
      return false;
    }
    if (integers.length > 0 && data && typeof data === "object") readIntegers(data as Record<string, unknown>, integers);
    const validate = validator();
    const valid = context === undefined ? validate(data) : validate(data, context as Parameters<typeof validate>[1]);
    checked.errors = validate.errors as FastifySchemaValidationError[] | null | undefined;
    return valid;
  };
  // Lets Fastify hand ajv the parent object, so defaults can be filled into the request part.
  Object.defineProperty(checked, "schemaEnv", { get: () => (validator() as unknown as { schemaEnv: unknown }).schemaEnv });
  return checked;
}

function integerProperties(schema: object): string[] {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {};
  return Object.entries(properties).flatMap(([name, property]) => (property.type === "integer" ? [name] : []));
}

const PLAIN_INTEGER = /^(?:0|-?[1-9][0-9]{0,15})$/;

function readIntegers(query: Record<string, unknown>, names: readonly string[]): void {
  for (const name of names) {
    const value = query[name];
    if (typeof value === "string" && PLAIN_INTEGER.test(value) && Number.isSafeInteger(Number(value))) query[name] = Number(value);
  }
}

export async function buildApp(deps: AppDependencies) {
  const { http } = deps.config;
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: "http" }),
    logController: new RequestLog(),
    bodyLimit: http.bodyLimitBytes,
    routerOptions: { maxParamLength: MAX_PATH_PARAMETER_CHARS },
    schemaController: { compilersFactory: { buildSerializer: lazySerializerFactory() } },
    // Slow and idle connections are closed: a request must arrive whole within requestTimeout (else
    // 408 and the connection closes; a connection that sends nothing at all is closed then too), and
    // an idle keep-alive connection lasts keepAliveTimeout. (Fastify's own default is no request
    // timeout at all.) A socket inactivity timeout (connectionTimeout) is not used: Node's periodic
    // request-timeout check keeps it from firing on a silent connection.
    requestTimeout: http.requestTimeoutMs,
    keepAliveTimeout: http.keepAliveTimeoutMs,
    // Node looks for requests past their timeout every 30 s by default; look often enough that the
    // timeout holds to within a quarter of itself.
    http: { connectionsCheckingInterval: Math.min(30_000, Math.ceil(http.requestTimeoutMs / 4)) },
    // URLs the router refuses before any route runs (malformed percent-encoding, a path segment past
    // maxParamLength): a 400 in the API's own shape, through the hooks (headers) like any answer.
    frameworkErrors: (error, request, reply) => {
      const message = ROUTER_REFUSALS[error.code];
      const statusCode = message ? 400 : 500;
      // The router's other errors (an async constraint failing) are ours: logged, and said nothing of.
      if (!message) request.log.error({ err: error }, "request failed");
      // No hook runs for these: the headers every answer carries are set here.
      const answer = (reply as FastifyReply).status(statusCode).type("application/json");
      setResponseHeaders(answer);
      // As bytes: Fastify adds a charset to any JSON it serializes, and no onSend hook runs here to take it off.
      return answer.send(Buffer.from(JSON.stringify({ statusCode, error: message ? "Bad Request" : "Internal Server Error", message: message ?? "internal error" })));
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies (task payloads) are validated as written: no coercion, no silent stripping, the way the
  // worker validates them. Query strings arrive as text: their integers are read strictly (above).
  const ajv = makeAjv();
  app.setValidatorCompiler(({ schema, httpPart }) => compileValidator(ajv, schema, httpPart as HttpPart));

  // The API speaks JSON only; a text/plain body is what a cross-site form or beacon would send.
  app.removeContentTypeParser("text/plain");

  app.addHook("onSend", async (_request, reply) => setResponseHeaders(reply));

  app.setErrorHandler((raised: Error & { statusCode?: number; code?: unknown }, request, reply) => {
    // The last line of defence behind validation: a database error that means "bad value" is the
    // caller's (400, with a message of our own), logged without the fields that quote the payload.
    const refusedByDatabase = clientErrorOf(raised);
    if (refusedByDatabase) request.log.warn({ err: loggableError(raised) }, "request refused: the database cannot store a value it holds");
    const error: Error & { statusCode?: number; code?: unknown } = refusedByDatabase ?? raised;
    const statusCode = statusOf(error);
    if (statusCode >= 500) {
      request.log.error({ err: loggableError(error) }, "request failed");
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
    transformObject: (document) => ("openapiObject" in document ? markOptionalBodies(document.openapiObject as OpenApiDocument) : document.swaggerObject),
    // Shared schemas keep their $id as their name (components.schemas.ErrorResponse, not def-0):
    // generated clients name their types after it.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, index) => (typeof json.$id === "string" ? json.$id : `def-${index}`) },
  });

  const authenticate = makeAuthenticator(deps.config.auth);
  await app.register(healthRoutes, { deps });
  // What a browser asks for on any page of this origin (the API's JSON, too): the dashboard's icon.
  app.get("/favicon.ico", { schema: { hide: true } }, async (_request, reply) => {
    const icon = ASSETS["favicon.ico"];
    return reply.type(icon.contentType).header("cache-control", "public, max-age=86400").send(icon.body);
  });
  await app.register(dashboardRoutes, { prefix: "/dashboard", deps, sources: deps.dashboardSources });
  await app.register(async (api) => {
    await api.register(authPlugin, { authenticate });
    await registerRateLimit(api, http.rateLimit, (request) => request.caller.id);
    await api.register(jobRoutes, { deps });
    await api.register(taskRoutes, { deps });
    await api.register(queueRoutes, { deps });
    await api.register(pauseRoutes, { deps });
    api.get("/openapi.json", { schema: { hide: true, querystring: NoQuery } }, async () => app.swagger());
  });
  await app.register(async (scraped) => {
    await scraped.register(authPlugin, { authenticate: makeMetricsAuthenticator(deps.config.auth.metricsToken, authenticate) });
    await scraped.register(metricsRoutes, { deps });
  });
  return app;
}
