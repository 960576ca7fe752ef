/** Queue depth and lag per task and queue (cached for a few seconds; see src/lifecycle/queue-stats.ts). */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import type { AppDependencies } from "../dependencies.ts";
import { AUTHENTICATED_ERRORS, errorResponses, NoQuery } from "../schemas.ts";

const Depth = Type.Object({
  task: Type.String(),
  queue: Type.Union([Type.String(), Type.Null()]),
  ready: Type.Integer(),
  scheduled: Type.Integer(),
  running: Type.Integer(),
  retryWait: Type.Integer(),
  dead: Type.Integer(),
  oldestReadyAgeSeconds: Type.Union([Type.Number(), Type.Null()]),
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
      const { at, depths } = await deps.queueStats.read();
      return { measuredAt: at.toISOString(), queues: depths };
    },
  );
};

export default queueRoutes;
