/**
 * Liveness and readiness. Liveness only says the process serves; readiness says this instance can
 * do its work: the database answers, the runner runs, the schema is at least what this build expects,
 * and (with the reliability wiring) it is not shutting down, every pool's LISTEN connection is up,
 * the cron loop is alive and heartbeats are written. Neither scans the jobs table.
 *
 * `/health` and `/ready` are the documented paths: Cloud Run answers some paths ending in `z` itself
 * ("avoid all paths ending in z", Cloud Run known issues), so `/healthz` and `/readyz` reach the
 * container from its own probes but not through the service URL (an uptime check, a caller). The
 * `z` forms stay as aliases, served by the same handlers, for probes already configured with them.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import Type from "typebox";
import { assertSchemaCurrent } from "../../db/migrate.ts";
import type { AppDependencies } from "../dependencies.ts";
import { errorResponses, NoQuery, PauseSchema } from "../schemas.ts";
import { pauseJson } from "./pauses.ts";

const CHECK_TIMEOUT_MS = 2000;

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) });
const Readiness = Type.Object({
  status: Type.Enum(["ready", "not_ready"]),
  detail: Type.Optional(Type.String()),
  checks: Type.Object({
    // Not probed while shutting down: the answer is "not ready" at once.
    database: Type.Optional(Check),
    worker: Check,
    schema: Type.Optional(Check),
    listen: Type.Optional(Check),
    cron: Type.Optional(Check),
    heartbeat: Type.Optional(Check),
    restarts: Type.Optional(Check),
  }),
  /** Crontab entries whose last success is older than they allow: reported, not a reason to leave traffic. */
  overdueSchedules: Type.Array(Type.String()),
  /** What this instance's runners hold back: information, never a reason to leave traffic. */
  paused: Type.Array(PauseSchema, { description: "What this instance's runners honour as paused now (information: a pause never makes an instance not ready)" }),
});

/** The documented path first; the `z` alias is left out of the OpenAPI document. */
const LIVENESS_PATHS = ["/health", "/healthz"] as const;
const READINESS_PATHS = ["/ready", "/readyz"] as const;

const healthRoutes: FastifyPluginAsyncTypebox<{ deps: AppDependencies }> = async (app, { deps }) => {
  for (const [index, url] of LIVENESS_PATHS.entries()) {
    app.get(
      url,
      {
        logLevel: "warn",
        schema: {
          hide: index > 0,
          operationId: "getHealth",
          summary: "Liveness: the process serves",
          tags: ["health"],
          security: [],
          querystring: NoQuery,
          response: { 200: Type.Object({ status: Type.Literal("ok") }), ...errorResponses(400) },
        },
      },
      async () => ({ status: "ok" as const }),
    );
  }

  for (const [index, url] of READINESS_PATHS.entries()) {
    app.get(
      url,
      {
        logLevel: "warn",
        schema: {
          hide: index > 0,
          operationId: "getReadiness",
          summary: "Readiness: this instance can do its work (503 with the failing checks otherwise)",
          tags: ["health"],
          security: [],
          querystring: NoQuery,
          response: { 200: Readiness, 503: Readiness, ...errorResponses(400) },
        },
      },
      readiness,
    );
  }

  async function readiness(_request: FastifyRequest, reply: FastifyReply) {
    if (deps.reliability?.shuttingDown()) {
      return reply
        .status(503)
        .send({ status: "not_ready", detail: "shutting down", checks: { worker: { ok: false, detail: "shutting down" } }, overdueSchedules: [], paused: [] });
    }
    const [database, schema] = await Promise.all([
      check(async () => {
        await deps.pool.query("select 1");
      }),
      check(() => assertSchemaCurrent(deps.pool)),
    ]);
    const worker = deps.worker.isRunning() ? { ok: true } : { ok: false, detail: "job runner is not running" };
    const checks = { database, worker, schema, ...deps.reliability?.checks() };
    const ready = Object.values(checks).every((result) => result.ok);
    const overdueSchedules = database.ok ? await overdue(deps) : [];
    const paused = (deps.pauses?.current() ?? []).map((pause) => pauseJson(pause));
    return reply.status(ready ? 200 : 503).send({ status: ready ? "ready" : "not_ready", checks, overdueSchedules, paused });
  }
};

async function overdue(deps: AppDependencies): Promise<string[]> {
  try {
    return (await deps.cronFreshness.read()).filter((status) => status.overdue).map((status) => status.id);
  } catch {
    return []; // freshness is detail; the checks above already say whether the database answers
  }
}

async function check(probe: () => Promise<void>): Promise<{ ok: boolean; detail?: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { ok: true };
  } catch (error) {
    return { ok: false, detail: (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

export default healthRoutes;
