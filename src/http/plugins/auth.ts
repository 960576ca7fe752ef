/**
 * Authentication for every route registered after it in its scope: Google-signed OIDC ID tokens
 * (what Cloud Run callers and Cloud Scheduler send), checked for signature, issuer, audience,
 * expiry, issue time and lifetime (at most an hour, as Google issues them), from callers on an allowlist; or static bearer tokens (development, CI), compared in
 * constant time. A missing or bad credential is 401, a valid caller not on the allowlist 403.
 *
 * jose (46 modules, ~0.1 s and ~12 MB at start-up, docs/BENCHMARKS.md) is loaded with the first ID
 * token to check, so a service that only takes static tokens, and every start-up, go without it.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type * as Jose from "jose";
import type { Config } from "../../config.ts";
import { isCrossSiteRequest } from "../cross-site.ts";

/** Who made the request, for history ("retried by …") and logs. */
export interface Caller {
  /** An email for OIDC callers, `token:<fingerprint>` for static tokens, `anonymous` with auth disabled. */
  id: string;
  method: "oidc" | "token" | "none";
}

declare module "fastify" {
  interface FastifyRequest {
    caller: Caller;
  }
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** The longest an ID token may be valid, from its `iat` (Google issues them for exactly this). */
export const ID_TOKEN_MAX_LIFETIME_S = 3600;
/** How far the callers' clocks may be off ours (an `iat` this far ahead, an `exp` this far behind). */
export const CLOCK_SKEW_S = 60;

export class AuthError extends Error {
  override name = "AuthError";
  readonly statusCode: 401 | 403 | 503;
  constructor(statusCode: 401 | 403 | 503, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

export type Authenticate = (authorization: string | undefined) => Promise<Caller>;

/** Turns an Authorization header into a caller, or throws an AuthError. Shared with the dashboard's login. */
export function makeAuthenticator(auth: Config["auth"]): Authenticate {
  const tokens = auth.tokens.map((token) => ({ digest: sha256(token), id: tokenCallerId(token) }));
  const oidc = auth.oidc;
  // One key set (one JWKS cache) for the authenticator's life, made when the first ID token arrives.
  let verifier: Promise<IdTokenVerifier> | undefined;
  const allowed = new Set(oidc?.allowedCallers ?? []);

  return async (authorization) => {
    if (auth.disabled) return { id: "anonymous", method: "none" };
    const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? "");
    if (!match) throw new AuthError(401, "missing bearer credential: send 'Authorization: Bearer <token>'");
    const credential = match[1]!;

    // Every configured token is compared, in constant time, whatever matches first.
    const digest = sha256(credential);
    let tokenCaller: Caller | null = null;
    for (const token of tokens) if (timingSafeEqual(digest, token.digest)) tokenCaller = { id: token.id, method: "token" };
    if (tokenCaller) return tokenCaller;

    if (!oidc || credential.split(".").length !== 3) throw new AuthError(401, "invalid credential");
    verifier ??= loadIdTokenVerifier(oidc.jwksUrl);
    const { jose, jwks } = await verifier;
    let email: unknown;
    let verified: unknown;
    try {
      const { payload } = await jose.jwtVerify(credential, jwks, {
        issuer: [...oidc.issuers],
        audience: oidc.audience,
        algorithms: ["RS256"],
        // A token without an expiry or an issue time would be good for ever; one issued in the future is forged or from a broken clock.
        requiredClaims: ["exp", "iat"],
        maxTokenAge: ID_TOKEN_MAX_LIFETIME_S,
        clockTolerance: CLOCK_SKEW_S,
      });
      // Google issues ID tokens for one hour: a longer one is not Google's, or is a token nobody should hold.
      if (payload.exp! - payload.iat! > ID_TOKEN_MAX_LIFETIME_S) {
        throw new AuthError(401, `invalid ID token: it is valid for more than ${ID_TOKEN_MAX_LIFETIME_S / 3600} hour`);
      }
      email = payload.email;
      verified = payload.email_verified;
    } catch (error) {
      if (error instanceof AuthError) throw error;
      // Google's keys out of reach says nothing about the caller: ask them to come back, don't refuse them.
      if (error instanceof jose.errors.JWKSTimeout || !(error instanceof jose.errors.JOSEError)) {
        throw new AuthError(503, "cannot verify ID tokens right now (signing keys unavailable)");
      }
      throw new AuthError(401, `invalid ID token: ${describeJoseError(jose.errors, error)}`);
    }
    if (typeof email !== "string" || verified !== true) throw new AuthError(403, "the ID token has no verified email");
    if (!allowed.has(email.toLowerCase())) throw new AuthError(403, `caller ${email} is not allowed to use this service`);
    return { id: email.toLowerCase(), method: "oidc" };
  };
}

interface IdTokenVerifier {
  jose: typeof Jose;
  jwks: ReturnType<typeof Jose.createRemoteJWKSet>;
}

async function loadIdTokenVerifier(jwksUrl: string): Promise<IdTokenVerifier> {
  const jose = await import("jose");
  return { jose, jwks: jose.createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 30_000, timeoutDuration: 5_000 }) };
}

/**
 * The authenticator of `GET /metrics`: the API's callers, or the bearer token METRICS_TOKEN, which
 * opens nothing else. The telemetry sidecar holds that token, so it can read metrics but never act
 * on jobs.
 */
export function makeMetricsAuthenticator(metricsToken: string | undefined, api: Authenticate): Authenticate {
  const scraper = metricsToken ? sha256(metricsToken) : null;
  return async (authorization) => {
    const credential = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
    if (scraper && credential && timingSafeEqual(sha256(credential), scraper)) return { id: "metrics-scraper", method: "token" };
    return api(authorization);
  };
}

/**
 * Whether a caller authenticated earlier (a dashboard session) would still be let in now: its
 * static token is still configured, its email still on the allowlist. Removing a token or an
 * email from the configuration so ends the sessions it opened.
 */
export function isCallerStillAllowed(auth: Config["auth"], callerId: string): boolean {
  if (auth.disabled) return true;
  if (callerId.startsWith("token:")) return auth.tokens.some((token) => tokenCallerId(token) === callerId);
  return auth.oidc?.allowedCallers.includes(callerId) ?? false;
}

/** Fastify plugin: every route after it in the scope needs a caller. */
export const authPlugin = fp<{ authenticate: Authenticate }>(
  async (app, { authenticate }) => {
    app.decorateRequest("caller", null as unknown as Caller);
    app.addHook("onRequest", async (request: FastifyRequest, reply: FastifyReply) => {
      // A browser behind `gcloud run services proxy` sends the proxy's credentials with any page's
      // request; a write a browser marks as cross-site is never one of ours.
      if (!SAFE_METHODS.has(request.method) && isCrossSiteRequest(request)) {
        return reply.status(403).send({ statusCode: 403, error: "Forbidden", message: "cross-site requests cannot act on jobs" });
      }
      try {
        request.caller = await authenticate(request.headers.authorization);
      } catch (error) {
        if (!(error instanceof AuthError)) throw error;
        request.log.info({ reason: error.message, status: error.statusCode }, "request refused");
        if (error.statusCode === 401) reply.header("www-authenticate", 'Bearer realm="observing-jobs"');
        const name = { 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable" }[error.statusCode];
        return reply.status(error.statusCode).send({ statusCode: error.statusCode, error: name, message: error.message });
      }
    });
  },
  { name: "observing-jobs-auth" },
);

/** A static token's caller id: a fingerprint that names it in history and logs without revealing it. */
function tokenCallerId(token: string): string {
  return `token:${sha256(token).toString("hex").slice(0, 8)}`;
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

function describeJoseError(joseErrors: typeof Jose.errors, error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return "expired";
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `${error.claim} claim is ${error.reason === "missing" ? "missing" : "not accepted"}`;
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return "signature does not verify";
  if (error instanceof joseErrors.JWKSNoMatchingKey) return "signed by an unknown key";
  return (error as InstanceType<typeof joseErrors.JOSEError>).code;
}
