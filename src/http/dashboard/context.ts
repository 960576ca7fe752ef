/** What every dashboard page receives, and how pages answer. */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { DashboardSources } from "./sources.ts";
import type { AppDependencies } from "../dependencies.ts";
import type { Authenticate } from "../plugins/auth.ts";
import { takeFlash } from "./flash.ts";
import type { Html } from "./html.ts";
import { renderPage, type Operator, type PageOptions } from "./layout.ts";

export interface DashboardContext {
  deps: AppDependencies;
  sources: DashboardSources;
  /** The API's authenticator, which the login form checks a token with. */
  authenticate: Authenticate;
}

/** A page route's handler; its method, path and options are declared in ./index.ts (PAGES). */
export type PageHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the dashboard's authentication hook on every page that needs a signed-in operator. */
    operator: Operator | null;
  }
}

/** A page; without a notice of its own it shows the one the action that led here left (see flash.ts). */
export function sendPage(request: FastifyRequest, reply: FastifyReply, options: Omit<PageOptions, "operator">, statusCode = 200): FastifyReply {
  const notice = options.notice ?? takeFlash(request, reply);
  return reply
    .status(statusCode)
    .type("text/html; charset=utf-8")
    .send(renderPage({ ...options, notice, operator: request.operator }));
}

/** The answer of a live endpoint: the page's fragments, rendered as on the page. */
export function sendFragments(reply: FastifyReply, fragments: Record<string, Html>): FastifyReply {
  return reply.send({ fragments: Object.fromEntries(Object.entries(fragments).map(([name, fragment]) => [name, fragment.toString()])) });
}

/** The operator of a page behind authentication (the hook guarantees one). */
export function operatorOf(request: FastifyRequest): Operator {
  if (!request.operator) throw new Error("dashboard route reached without an operator");
  return request.operator;
}
