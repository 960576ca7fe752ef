/**
 * The OpenTelemetry SDK, started by instrumentation.ts only when an exporter is configured: the
 * trace SDK (@opentelemetry/sdk-trace) batching into one OTLP/HTTP exporter, the propagators of
 * OTEL_PROPAGATORS, AsyncLocalStorage for the active context, and the instrumentations of what the
 * service uses: incoming HTTP, Fastify's routes and hooks, outgoing fetch (undici) and pg.
 *
 * Not @opentelemetry/sdk-node: it imports the exporters of every signal and protocol (traces, metrics
 * and logs; OTLP over gRPC, HTTP and protobuf; Zipkin; Prometheus) whatever is configured, about
 * 0.5 s and 40 MB at start-up for a service that only exports traces (docs/BENCHMARKS.md).
 */
import { register } from "node:module";
import type { TextMapPropagator } from "@opentelemetry/api";
import { diag, DiagConsoleLogger, DiagLogLevel, propagation, trace, context } from "./otel-api.ts";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { FastifyOtelInstrumentation } from "@fastify/otel";
import type { Instrumentation } from "@opentelemetry/instrumentation";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { UndiciInstrumentation } from "@opentelemetry/instrumentation-undici";
import { defaultResource, detectResources, resourceAttributesEnvDetector, resourceFromAttributes, serviceNameEnvDetector } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace";
import { register as registerInThread, supportsSyncHooks } from "import-in-the-middle/register-hooks.mjs";
import type { TracingSettings } from "./tracing-settings.ts";

/** An instrumentation and the modules it patches (what InstrumentationBase adds to the interface). */
type PatchingInstrumentation = Instrumentation & { getModuleDefinitions(): Array<{ name: string }> };

/** Health checks and scrapes: a span for each would be most of every trace. */
const QUIET_ROUTES = new Set(["/healthz", "/readyz", "/health", "/ready", "/metrics"]);

/** Starts tracing; resolves to the function that flushes and stops it. */
export async function startTracing(settings: TracingSettings, service: { name: string; version: string }): Promise<() => Promise<void>> {
  // Export failures and dropped spans are reported here (stderr), not silently lost.
  diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);

  const instrumentations: PatchingInstrumentation[] = [
    new HttpInstrumentation({ ignoreIncomingRequestHook: (request) => QUIET_ROUTES.has((request.url ?? "").split("?")[0]!) }),
    new UndiciInstrumentation(),
    // Only queries inside a request or a job: the runners' polling would otherwise be most of every trace.
    new PgInstrumentation({ requireParentSpan: true }),
    new FastifyOtelInstrumentation({ registerOnInitialization: true, ignorePaths: (route) => QUIET_ROUTES.has(route.url) }),
  ];
  // CommonJS modules are patched through require hooks. ESM imports of them (the service's own
  // `import pg from "pg"`) go through import-in-the-middle's loader hook, limited to the modules the
  // instrumentations patch (hooking every module the service loads doubled its start-up time), and
  // run in this thread where Node can: module.register() starts a loader thread and asks it about
  // every one of the ~1,400 modules the service loads.
  const include = [...new Set(instrumentations.flatMap((instrumentation) => instrumentation.getModuleDefinitions().map((definition) => definition.name)))];
  if (supportsSyncHooks()) registerInThread({ include });
  else register("@opentelemetry/instrumentation/hook.mjs", import.meta.url, { data: { include } });

  const resource = defaultResource()
    .merge(resourceFromAttributes({ "service.name": service.name, "service.version": service.version }))
    .merge(detectResources({ detectors: [serviceNameEnvDetector, resourceAttributesEnvDetector] }));
  const exporters = await Promise.all(settings.exporters.map((name) => makeExporter(name, settings.protocol)));
  const spanProcessors: SpanProcessor[] = exporters.map((exporter) =>
    exporter instanceof ConsoleSpanExporter ? new SimpleSpanProcessor({ exporter }) : new BatchSpanProcessor({ exporter, ...settings.batch }),
  );
  const provider = new TracerProvider({ resource, spanProcessors, ...(settings.sampler ? { sampler: makeSampler(settings.sampler) } : {}) });

  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const propagator = makePropagator(settings.propagators);
  if (propagator) propagation.setGlobalPropagator(propagator);
  trace.setGlobalTracerProvider(provider);
  for (const instrumentation of instrumentations) instrumentation.setTracerProvider(provider);

  return async () => {
    for (const instrumentation of instrumentations) instrumentation.disable();
    await provider.shutdown();
  };
}

/** Only the exporter that is configured is loaded. */
async function makeExporter(name: TracingSettings["exporters"][number], protocol: TracingSettings["protocol"]): Promise<SpanExporter> {
  if (name === "console") return new ConsoleSpanExporter();
  const { OTLPTraceExporter } = protocol === "http/json" ? await import("@opentelemetry/exporter-trace-otlp-http") : await import("@opentelemetry/exporter-trace-otlp-proto");
  return new OTLPTraceExporter();
}

function makePropagator(names: TracingSettings["propagators"]): TextMapPropagator | undefined {
  const propagators = names.map((name) => (name === "tracecontext" ? new W3CTraceContextPropagator() : new W3CBaggagePropagator()));
  if (propagators.length <= 1) return propagators[0];
  return new CompositePropagator({ propagators });
}

function makeSampler({ name, ratio }: NonNullable<TracingSettings["sampler"]>): Sampler {
  const root = name.endsWith("always_off") ? new AlwaysOffSampler() : name.endsWith("traceidratio") ? new TraceIdRatioBasedSampler(ratio) : new AlwaysOnSampler();
  return name.startsWith("parentbased_") ? new ParentBasedSampler({ root }) : root;
}
