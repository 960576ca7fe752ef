import type { FastifyRequest } from "fastify";

/**
 * True when the browser says the request was started by a page of another site: the Fetch
 * Metadata header when the browser sends it, else the Origin header. Scripts (curl, the API
 * clients) send neither and pass.
 */
export function isCrossSiteRequest(request: FastifyRequest): boolean {
  const site = request.headers["sec-fetch-site"];
  if (typeof site === "string") return site !== "same-origin" && site !== "none";
  const origin = request.headers.origin;
  if (typeof origin !== "string") return false;
  try {
    return new URL(origin).host !== request.headers.host;
  } catch {
    // "null" (sandboxed frames, some redirects) cannot be told apart from a hostile page.
    return true;
  }
}
