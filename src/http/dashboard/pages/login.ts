/**
 * Signing in with a bearer token (a static API token, or an ID token from
 * `gcloud auth print-identity-token`), checked by the API's own authenticator, and signing out.
 * The session is recorded by the server and its cookie holds a random id only; the token is
 * forgotten at once. Signing out ends the session in the database, so its cookie opens nothing,
 * on any instance, even if the browser (or whoever copied it) keeps it.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { AuthError } from "../../plugins/auth.ts";
import { sendPage, type DashboardContext, type PageHandler } from "../context.ts";
import { html } from "../html.ts";
import { endSession, openSession } from "../../../db/repositories/dashboard-sessions.ts";
import { isHttps, SESSION_COOKIE, SESSION_PATH, SESSION_TTL_MS } from "../session.ts";

/** Only a dashboard path may be where the login sends the browser next (no open redirect). */
export function safeNext(next: unknown): string {
  if (typeof next !== "string") return "/dashboard";
  return /^\/dashboard(?:[/?#][^\\\s]*)?$/.test(next) && !next.startsWith("/dashboard//") ? next : "/dashboard";
}

export function loginRoutes({ deps: { db }, authenticate }: DashboardContext) {
  const loginPage: PageHandler = async (request, reply) => {
    const next = safeNext((request.query as { next?: unknown }).next);
    if (request.operator) return reply.redirect(next, 303);
    return sendLoginPage(request, reply, next, null, 200);
  };

  const login: PageHandler = async (request, reply) => {
    const form = request.body instanceof URLSearchParams ? request.body : new URLSearchParams();
    const next = safeNext(form.get("next"));
    const token = (form.get("token") ?? "").trim();
    if (token === "") return sendLoginPage(request, reply, next, "Enter a token.", 400);
    let callerId: string;
    try {
      // The same check an API request with this token as its bearer credential gets.
      ({ id: callerId } = await authenticate(`Bearer ${token}`));
    } catch (error) {
      if (!(error instanceof AuthError)) throw error;
      request.log.info({ reason: error.message, status: error.statusCode }, "dashboard login refused");
      return sendLoginPage(request, reply, next, `Sign-in refused: ${error.message}.`, error.statusCode);
    }
    const session = await openSession(db, callerId, SESSION_TTL_MS);
    reply.setCookie(SESSION_COOKIE, session.id, {
      signed: true,
      httpOnly: true,
      // Strict: the browser sends the session with requests from the dashboard's own pages only.
      sameSite: "strict",
      secure: isHttps(request),
      path: SESSION_PATH,
      maxAge: SESSION_TTL_MS / 1000,
    });
    request.log.info({ operator: callerId }, "dashboard login");
    return reply.redirect(next, 303);
  };

  const logout: PageHandler = async (request, reply) => {
    const signed = request.cookies[SESSION_COOKIE];
    const unsigned = signed ? request.unsignCookie(signed) : null;
    if (unsigned?.valid && unsigned.value) await endSession(db, unsigned.value);
    reply.clearCookie(SESSION_COOKIE, { path: SESSION_PATH, httpOnly: true, sameSite: "strict", secure: isHttps(request) });
    request.log.info({ operator: request.operator?.id }, "dashboard logout");
    return reply.redirect("/dashboard/login", 303);
  };

  return { "GET /login": loginPage, "POST /login": login, "POST /logout": logout };
}

function sendLoginPage(request: FastifyRequest, reply: FastifyReply, next: string, error: string | null, statusCode: number): FastifyReply {
  return sendPage(
    request,
    reply,
    {
      title: "Sign in",
      section: "login",
      notice: error ? { kind: "error", text: error } : null,
      body: html`<form method="post" action="/dashboard/login" class="login">
          <input type="hidden" name="next" value="${next}">
          <div class="field"><label for="token">Bearer token</label>
            <input id="token" name="token" type="password" autocomplete="off" required aria-describedby="token-help">
            <p class="help" id="token-help">An API token (<code>API_TOKENS</code>) or a Google ID token of an allowed caller
              (<code>gcloud auth print-identity-token</code>). It is checked once and not kept: the session lasts ${SESSION_TTL_MS / 3_600_000} hours.</p></div>
          <button type="submit">Sign in</button>
        </form>
        <p class="muted">Opening the dashboard through <code>gcloud run services proxy</code> signs you in with your ID token, without this form.</p>`,
    },
    statusCode,
  );
}
