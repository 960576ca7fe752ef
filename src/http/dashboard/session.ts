/**
 * Dashboard sessions and CSRF protection.
 *
 * A session is recorded by the server (src/db/repositories/dashboard-sessions.ts) and its cookie holds only a
 * random id, signed: never the token that proved who the operator is, so a stolen cookie cannot be
 * turned into API access. It ends after SESSION_TTL_MS whatever the browser does, and at once on
 * every instance when the operator signs out. Actions from a session carry a synchronizer token
 * derived from that very cookie, which a page on another site cannot read.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";

export const SESSION_COOKIE = "observing_jobs_session";
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** Where the cookie is sent: the dashboard only, never the API. */
export const SESSION_PATH = "/dashboard";
/** The form field (or, for scripts, the header) carrying the CSRF token. */
export const CSRF_FIELD = "_csrf";
export const CSRF_HEADER = "x-csrf-token";

/** A random key for development, when DASHBOARD_SESSION_SECRET is not set. */
export function makeDevelopmentSecret(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * The CSRF token of a session: an HMAC of the signed cookie, under a key derived from the session
 * secret for this purpose only. A new login makes a new cookie and so a new token.
 */
export function csrfTokenFor(secret: string, signedCookie: string): string {
  const key = createHmac("sha256", secret).update("observing-jobs dashboard csrf").digest();
  return createHmac("sha256", key).update(signedCookie).digest("base64url");
}

export function csrfTokenMatches(expected: string, given: unknown): boolean {
  if (typeof given !== "string") return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}


/** Whether the browser reached the service over HTTPS (Cloud Run terminates TLS in front of it). */
export function isHttps(request: FastifyRequest): boolean {
  if (request.protocol === "https") return true;
  const forwarded = request.headers["x-forwarded-proto"];
  return typeof forwarded === "string" && forwarded.split(",")[0]!.trim() === "https";
}
