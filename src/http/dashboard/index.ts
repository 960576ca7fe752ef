/**
 * The ops dashboard under /dashboard: server-rendered pages over the same library functions as
 * the API (listJobs, findJob, retryJob, enqueueJob, …), a small script that refreshes live
 * figures, and the API's authentication.
 *
 * Who may look: a request with a valid Authorization header (a bearer token, or the ID token that
 * `gcloud run services proxy` adds), or a browser with a session cookie from the login form.
 * Who may act: the same, on POST only, and
 * - from a session, only with the session's CSRF token, since the browser adds the cookie to any
 *   request to this site, including one a hostile page makes it send;
 * - from an Authorization header, without a token: browsers never attach that header on their
 *   own, so a forged cross-site request cannot carry it. A local proxy that adds it to everything
 *   it forwards (`gcloud run services proxy`) would, which is why cross-site requests are refused
 *   outright (Fetch Metadata / Origin) whatever their credentials.
 */
import { isCrossSiteRequest } from "../cross-site.ts";
import { findUnstorableText } from "../../input-limits.ts";
import { clientErrorOf, loggableError } from "../database-errors.ts";
import { statusOf } from "../errors.ts";
import { RATE_LIMITED, registerRateLimit } from "../rate-limit.ts";
import cookie from "@fastify/cookie";
import type { FastifyContextConfig, FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { findOpenSession } from "../../db/repositories/dashboard-sessions.ts";
import type { DashboardSources } from "./sources.ts";
import type { AppDependencies } from "../dependencies.ts";
import { AuthError, isCallerStillAllowed, makeAuthenticator } from "../plugins/auth.ts";
import { ASSETS, type AssetName } from "./assets.ts";
import { sendPage, type DashboardContext, type PageHandler } from "./context.ts";
import { html } from "./html.ts";
import type { Operator } from "./layout.ts";
import {
  CSRF_FIELD,
  CSRF_HEADER,
  csrfTokenFor,
  csrfTokenMatches,
  makeDevelopmentSecret,
  SESSION_COOKIE,
} from "./session.ts";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Served without a signed-in operator (the login form, the stylesheet and script). */
    dashboardPublic?: boolean;
  }
}

export interface DashboardOptions {
  deps: AppDependencies;
  /** Worker pools and overdue cron entries, from their owners; absent ones show as "not available". */
  sources?: DashboardSources;
}

const SECURITY_HEADERS = {
  // Scripts and styles come from the service's own files only: no inline script can run, even
  // one that slipped past escaping.
  "content-security-policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "same-origin",
  "cross-origin-opener-policy": "same-origin",
};

/** A route under /dashboard, by method and path: "GET /jobs/:id". */
type Route = `${"GET" | "POST"} /${string}`;
type PageRoutes = Partial<Record<Route, PageHandler>>;

interface Page {
  load(): Promise<(context: DashboardContext) => PageRoutes>;
  routes: Partial<Record<Route, FastifyContextConfig>>;
}

/** A page module's routes (its handlers' keys) with their options: a route missing from either side does not compile. */
function page<R extends Route>(load: () => Promise<(context: DashboardContext) => Record<R, PageHandler>>, routes: Record<NoInfer<R>, FastifyContextConfig>): Page {
  return { load, routes };
}

const OPEN: FastifyContextConfig = { dashboardPublic: true };

/**
 * Every page route. A page's module is imported on the first request to one of its routes, not at
 * start-up: an instance may never serve a page, and the page modules (with cronstrue and the
 * schema form, which only they use) are ~1 MB of an idle process (docs/BENCHMARKS.md, "Footprint").
 */
const PAGES: readonly Page[] = [
  page(async () => (await import("./pages/login.ts")).loginRoutes, { "GET /login": OPEN, "POST /login": OPEN, "POST /logout": {} }),
  page(async () => (await import("./pages/overview.ts")).overviewRoutes, { "GET /": {}, "GET /live/overview": {} }),
  page(async () => (await import("./pages/jobs.ts")).jobRoutes, { "GET /jobs": {}, "GET /jobs/:id": {}, "GET /jobs/:id/live": {}, "POST /jobs/:id/:action": RATE_LIMITED }),
  page(async () => (await import("./pages/dead-letter.ts")).deadLetterRoutes, { "GET /dead-letter": {}, "POST /dead-letter/:action": RATE_LIMITED }),
  page(async () => (await import("./pages/pauses.ts")).pauseRoutes, { "POST /pauses/:action": RATE_LIMITED }),
  page(async () => (await import("./pages/tasks.ts")).taskRoutes, { "GET /tasks": {}, "GET /tasks/:name": {}, "POST /tasks/:name/run": RATE_LIMITED }),
  page(async () => (await import("./pages/queues.ts")).queueRoutes, { "GET /queues": {}, "GET /live/queues": {} }),
];

function registerPage(app: FastifyInstance, context: DashboardContext, { load, routes }: Page): void {
  // Loaded once, by whichever of the page's routes is asked for first.
  let handlers: Promise<PageRoutes> | undefined;
  for (const [route, config] of Object.entries(routes) as [Route, FastifyContextConfig][]) {
    const [method, url] = route.split(" ") as ["GET" | "POST", string];
    app.route({ method, url, config, handler: async (request, reply) => (await (handlers ??= load().then((routesOf) => routesOf(context))))[route]!(request, reply) });
  }
}

/** Live endpoints answer JSON (the refresh script reads them); everything else is a page. */
const wantsJson = (request: FastifyRequest) => /\/live(\/|$)/.test(request.url.split("?")[0]!);

const dashboardRoutes: FastifyPluginAsync<DashboardOptions> = async (app, { deps, sources = {} }) => {
  const { auth } = deps.config;
  let secret = deps.config.dashboard?.sessionSecret;
  if (!secret) {
    // parseConfig requires the secret in production; elsewhere a per-process key will do.
    secret = makeDevelopmentSecret();
    deps.logger.info("DASHBOARD_SESSION_SECRET is not set: dashboard sessions are signed with a key made for this process and end when it stops");
  }
  const sessionSecret = secret;
  const authenticate = makeAuthenticator(auth);

  await app.register(cookie, { secret: sessionSecret });
  // The same per-caller limit as the API's enqueue and action routes, on the forms that enqueue and act.
  await registerRateLimit(app, deps.config.http.rateLimit, (request) => request.operator?.id ?? request.ip);
  app.decorateRequest("operator", null);
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, (_request, body, done) => {
    done(null, new URLSearchParams(body as string));
  });
  // Pages are not part of the API's OpenAPI document.
  app.addHook("onRoute", (route) => {
    route.schema = { ...route.schema, hide: true };
  });

  app.addHook("onSend", async (request, reply) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) reply.header(name, value);
    if (!reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
  });

  /** The operator behind a request, null when there is none, or the AuthError of a bad Authorization header. */
  async function identify(request: FastifyRequest): Promise<Operator | AuthError | null> {
    if (request.headers.authorization !== undefined) {
      try {
        return { id: (await authenticate(request.headers.authorization)).id, via: "header", csrfToken: null };
      } catch (error) {
        if (error instanceof AuthError) return error;
        throw error;
      }
    }
    if (auth.disabled) return { id: "anonymous", via: "open", csrfToken: null };
    const signed = request.cookies[SESSION_COOKIE];
    if (!signed) return null;
    const unsigned = request.unsignCookie(signed);
    // Looked up on every request: a session signed out on another instance opens nothing here either.
    const session = unsigned.valid && unsigned.value ? await findOpenSession(deps.db, unsigned.value) : null;
    if (!session || !isCallerStillAllowed(auth, session.callerId)) return null;
    return { id: session.callerId, via: "session", csrfToken: csrfTokenFor(sessionSecret, signed) };
  }

  app.addHook("onRequest", async (request, reply) => {
    const found = await identify(request);
    request.operator = found instanceof AuthError ? null : found;
    if (request.operator || request.routeOptions.config.dashboardPublic) return;
    if (found instanceof AuthError) {
      request.log.info({ reason: found.message, status: found.statusCode }, "dashboard request refused");
      return refuse(request, reply, found.statusCode, `Refused: ${found.message}.`);
    }
    if ((request.method === "GET" || request.method === "HEAD") && !wantsJson(request)) {
      return reply.redirect(`/dashboard/login?next=${encodeURIComponent(request.url)}`, 303);
    }
    return refuse(request, reply, 401, "Your session has ended or you are not signed in: sign in again.");
  });

  app.addHook("preHandler", async (request, reply) => {
    if (request.method !== "POST") return;
    if (isCrossSiteRequest(request)) {
      request.log.warn({ operator: request.operator?.id, origin: request.headers.origin }, "cross-site dashboard request refused");
      return refuse(request, reply, 403, "Refused: the request came from another site.");
    }
    const operator = request.operator;
    // The login form has no session yet; a header or disabled authentication needs no token (see above).
    if (!operator || operator.via !== "session" || request.routeOptions.config.dashboardPublic) return;
    const body = request.body;
    const given = body instanceof URLSearchParams ? body.get(CSRF_FIELD) : request.headers[CSRF_HEADER];
    if (!csrfTokenMatches(operator.csrfToken ?? "", given)) {
      request.log.warn({ operator: operator.id, url: request.url }, "dashboard action without a valid CSRF token refused");
      return refuse(request, reply, 403, "Refused: the form's security token is missing or out of date. Reload the page and try again.");
    }
  });

  // What a form or a link holds must be text PostgreSQL can store (the API's validators check the same).
  app.addHook("preHandler", async (request, reply) => {
    const problem = findUnstorableText(request.query) ?? findUnstorableText(request.params) ?? findUnstorableText(request.body);
    if (!problem) return;
    // The field is named only when it is one of ours in shape: a link's names are the sender's words.
    const field = decodePointer(problem.path.split("/")[1] ?? "");
    const named = /^[\w.-]{1,64}$/.test(field) ? `The field '${field}'` : "A field";
    return refuse(request, reply, 400, `${named} ${problem.message}.`);
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const refusedByDatabase = clientErrorOf(error);
    if (refusedByDatabase) {
      request.log.warn({ err: loggableError(error) }, "dashboard request refused: the database cannot store a value it holds");
      return refuse(request, reply, 400, `Refused: ${refusedByDatabase.message}.`);
    }
    const statusCode = statusOf(error);
    if (statusCode >= 500) {
      request.log.error({ err: loggableError(error) }, "dashboard request failed");
      return refuse(request, reply, statusCode, "Something went wrong on the server; the details are in the service logs.");
    }
    return refuse(request, reply, statusCode, error.message);
  });
  app.setNotFoundHandler((request, reply) => refuse(request, reply, 404, `There is no dashboard page at ${request.url.split("?")[0]}.`));

  app.get("/assets/:file", { config: { dashboardPublic: true } }, async (request, reply) => {
    const { file } = request.params as { file: string };
    if (!Object.hasOwn(ASSETS, file)) return reply.callNotFound();
    const asset = ASSETS[file as AssetName];
    // The URL names the content (?v=digest): a current URL may be cached for good.
    const current = request.url === asset.url;
    return reply
      .type(asset.contentType)
      .header("cache-control", current ? "public, max-age=31536000, immutable" : "no-cache")
      .send(asset.body);
  });

  const context = { deps, sources, authenticate };
  for (const each of PAGES) registerPage(app, context, each);
};

function decodePointer(segment: string): string {
  return segment.replaceAll("~1", "/").replaceAll("~0", "~");
}

function refuse(request: FastifyRequest, reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  if (wantsJson(request)) return reply.status(statusCode).send({ statusCode, message });
  const signIn = statusCode === 401 ? html` <a href="/dashboard/login">Sign in</a>` : html` <a href="/dashboard">Back to the dashboard</a>`;
  const title = statusCode === 404 ? "Not found" : statusCode === 401 || statusCode === 403 ? "Not allowed" : statusCode >= 500 ? "Error" : "Cannot do that";
  return sendPage(request, reply, { title, section: "overview", body: html`<p>${message}${signIn}</p>` }, statusCode);
}

export default dashboardRoutes;
