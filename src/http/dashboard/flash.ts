/**
 * Notices after an action ("Job cancelled.", "Retried 5 resolve_taxa jobs.") travel from the action
 * to the page it redirects to in a short-lived cookie signed with the session secret: what the page
 * says is the server's own record of what it did. A query string would let any link make the
 * dashboard announce whatever its author wrote (a phishing vector, even escaped).
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Notice } from "./layout.ts";
import { isHttps, SESSION_PATH } from "./session.ts";

const FLASH_COOKIE = "observing_jobs_notice";
/** Long enough for the redirect, short enough that a notice never greets a later visit. */
const FLASH_TTL_SECONDS = 60;

function cookieOptions(request: FastifyRequest) {
  return { httpOnly: true, sameSite: "strict" as const, secure: isHttps(request), path: SESSION_PATH };
}

/** Shows the notice on the next page this browser opens (the action's redirect target). */
export function setFlash(request: FastifyRequest, reply: FastifyReply, notice: Notice): void {
  const value = Buffer.from(JSON.stringify({ kind: notice.kind, text: notice.text })).toString("base64url");
  reply.setCookie(FLASH_COOKIE, value, { ...cookieOptions(request), signed: true, maxAge: FLASH_TTL_SECONDS });
}

/** The notice a previous action left for this page, once: the cookie is cleared as it is read. */
export function takeFlash(request: FastifyRequest, reply: FastifyReply): Notice | null {
  const signed = request.cookies[FLASH_COOKIE];
  if (!signed) return null;
  reply.clearCookie(FLASH_COOKIE, cookieOptions(request));
  const unsigned = request.unsignCookie(signed);
  if (!unsigned.valid || !unsigned.value) return null;
  try {
    const parsed = JSON.parse(Buffer.from(unsigned.value, "base64url").toString("utf8")) as Partial<Notice>;
    if ((parsed.kind === "ok" || parsed.kind === "error") && typeof parsed.text === "string") return { kind: parsed.kind, text: parsed.text };
  } catch {
    // A cookie this service signed always parses; anything else shows nothing.
  }
  return null;
}
