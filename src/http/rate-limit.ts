/**
 * A per-caller rate limit on the routes that enqueue or act (@fastify/rate-limit): one caller
 * cannot fill the queue as fast as the database accepts. Counted per instance, in memory; with N
 * instances a caller gets up to N times the limit. A refused request is a 429 with Retry-After
 * (seconds until the window frees a request) and enqueues nothing.
 */
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Config } from "../config.ts";
import { HttpError } from "./errors.ts";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Counted against the caller's rate limit (see RATE_LIMITED). */
    rateLimited?: boolean;
  }
}

/** Route config that puts a route under the limit (a no-op where the scope registered none). */
export const RATE_LIMITED = { rateLimited: true } as const;

/**
 * Registers the limiter in this scope; routes with RATE_LIMITED config are counted by `callerOf`.
 * Counting starts after authentication (the caller is known) and before validation, so malformed
 * requests count too.
 */
export async function registerRateLimit(
  app: FastifyInstance,
  limit: Config["http"]["rateLimit"],
  callerOf: (request: FastifyRequest) => string,
): Promise<void> {
  if (!limit) return;
  await app.register(rateLimit, {
    // One window per caller across every limited route: @fastify/rate-limit's per-route settings would
    // count each route apart (a caller would get the limit once per task). Unlimited routes are let through.
    global: true,
    allowList: (request) => request.routeOptions.config.rateLimited !== true,
    max: limit.max,
    timeWindow: limit.windowMs,
    hook: "preValidation",
    keyGenerator: callerOf,
    errorResponseBuilder: (_request, context) =>
      new HttpError(429, `too many requests from this caller: at most ${context.max} per ${Math.round(limit.windowMs / 1000)} s; retry in ${context.after}`),
  });
}
