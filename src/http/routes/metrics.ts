/** Prometheus text exposition of the service's metrics (src/observability/metrics.ts). */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import Type from "typebox";
import type { AppDependencies } from "../dependencies.ts";
import { AUTHENTICATED_ERRORS, errorResponses, NoQuery } from "../schemas.ts";

/** What prom-client's registry answers with (its `contentType`), and so what the document names. */
const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const metricsRoutes: FastifyPluginAsyncTypebox<{ deps: AppDependencies }> = async (app, { deps }) => {
  app.get(
    "/metrics",
    {
      logLevel: "warn",
      schema: {
        operationId: "getMetrics",
        summary: "Prometheus metrics: job counters and durations, queue depth and lag, cron freshness",
        tags: ["observability"],
        querystring: NoQuery,
        response: {
          200: { description: "Prometheus text exposition format 0.0.4", content: { [METRICS_CONTENT_TYPE]: { schema: Type.String() } } },
          ...errorResponses(...AUTHENTICATED_ERRORS),
        },
      },
    },
    async (_request, reply) => {
      const text = await deps.metrics.registry.metrics();
      return reply.type(deps.metrics.registry.contentType).send(text);
    },
  );
};

export default metricsRoutes;
