/** Queue depth and lag per task and queue (cached for a few seconds; see src/lifecycle/queue-stats.ts). */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import type { AppDependencies } from "../dependencies.ts";
import { findPauses } from "../../db/repositories/pauses.ts";
import { pauseHolding } from "../../lifecycle/pauses.ts";
import { AUTHENTICATED_ERRORS, errorResponses, NoQuery, PauseSchema } from "../schemas.ts";
import { pauseJson } from "./pauses.ts";

const Depth = Type.Object({
  task: Type.String(),
  queue: Type.Union([Type.String(), Type.Null()]),
  ready: Type.Integer(),
  scheduled: Type.Integer(),
  running: Type.Integer(),
  retryWait: Type.Integer(),
  dead: Type.Integer(),
  oldestReadyAgeSeconds: Type.Union([Type.Number(), Type.Null()]),
  paused: Type.Union([PauseSchema, Type.Null()], { description: "The pause holding these jobs back (their task's, cap group's or queue's), or null" }),
});

const queueRoutes: FastifyPluginAsyncTypebox<{ deps: AppDependencies }> = async (app, { deps }) => {
  app.get(
    "/queues",
    {
      schema: {
        operationId: "getQueues",
        summary: "Jobs per task and queue by state, and the age of the oldest ready job",
        tags: ["queues"],
        querystring: NoQuery,
        response: { 200: Type.Object({ measuredAt: Type.String({ format: "date-time" }), queues: Type.Array(Depth) }), ...errorResponses(...AUTHENTICATED_ERRORS) },
      },
    },
    async () => {
      const [{ at, depths }, pauses] = await Promise.all([deps.queueStats.read(), findPauses(deps.db)]);
      return {
        measuredAt: at.toISOString(),
        queues: depths.map((depth) => {
          const task = deps.registry.find(depth.task);
          const held = task ? pauseHolding(pauses, task, depth.queue) : pauses.find((pause) => pause.kind === "queue" && pause.name === depth.queue);
          return { ...depth, paused: pauseJson(held) };
        }),
      };
    },
  );
};

export default queueRoutes;
