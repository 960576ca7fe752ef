/**
 * OpenTelemetry, loaded before anything else: `node --import ./src/observability/instrumentation.ts
 * src/main.ts` (the npm start script and the image's command do this). The exporter is configured by
 * the standard OTEL_* variables (OTLP); with none set, nothing is started and tracing costs nothing.
 * Instrumented: incoming HTTP, outgoing fetch (the GBIF, Wikidata and IUCN clients), Fastify's
 * routes and hooks, and pg queries made inside a traced request or job.
 */
import { register } from "node:module";
import { tracingEnabled } from "../config.ts";
import { onTelemetryShutdown } from "./telemetry.ts";

const QUIET_ROUTES = new Set(["/health", "/ready", "/healthz", "/readyz", "/metrics"]);

if (tracingEnabled()) {
  // ESM modules are instrumented through this loader hook; CommonJS ones (pg) through require hooks.
  register("@opentelemetry/instrumentation/hook.mjs", import.meta.url);
  const [{ NodeSDK }, { HttpInstrumentation }, { UndiciInstrumentation }, { PgInstrumentation }, { FastifyOtelInstrumentation }] = await Promise.all([
    import("@opentelemetry/sdk-node"),
    import("@opentelemetry/instrumentation-http"),
    import("@opentelemetry/instrumentation-undici"),
    import("@opentelemetry/instrumentation-pg"),
    import("@fastify/otel"),
  ]);
  const sdk = new NodeSDK({
    serviceName: "observing-jobs",
    instrumentations: [
      new HttpInstrumentation({ ignoreIncomingRequestHook: (request) => QUIET_ROUTES.has((request.url ?? "").split("?")[0]!) }),
      new UndiciInstrumentation(),
      // Only queries inside a request or a job: the runners' polling would otherwise be most of every trace.
      new PgInstrumentation({ requireParentSpan: true }),
      new FastifyOtelInstrumentation({ registerOnInitialization: true, ignorePaths: (route) => QUIET_ROUTES.has(route.url) }),
    ],
  });
  sdk.start();
  onTelemetryShutdown(() => sdk.shutdown());
}
