/** Prometheus text exposition of the service's metrics (src/observability/metrics.ts). */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import type { AppDependencies } from "../dependencies.ts";

const metricsRoutes: FastifyPluginAsyncTypebox<{ deps: AppDependencies }> = async (app, { deps }) => {
  app.get(
    "/metrics",
    {
      logLevel: "warn",
      schema: {
        operationId: "getMetrics",
        summary: "Prometheus metrics: job counters and durations, queue depth and lag, cron freshness",
        tags: ["observability"],
        response: { 200: Type.String() },
      },
    },
    async (_request, reply) => {
      const text = await deps.metrics.registry.metrics();
      return reply.type(deps.metrics.registry.contentType).send(text);
    },
  );
};

export default metricsRoutes;
