/**
 * The OpenTelemetry settings the service honours: the standard OTEL_* variables
 * (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/), read by
 * instrumentation.ts before anything else loads. This module imports nothing, so with tracing off
 * (no exporter configured) deciding so is all tracing costs at start-up; src/config.ts, which
 * parses every other setting, loads TypeBox and Ajv. A value the service cannot honour stops it at
 * start-up with a message naming the variable, as config.ts does.
 *
 * The exporter's endpoint, headers, timeout and compression (OTEL_EXPORTER_OTLP_*) and the resource
 * (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) are read by the OpenTelemetry packages themselves.
 */

type Environment = Readonly<Record<string, string | undefined>>;

export type TracesExporter = "otlp" | "console";
/** OTLP over HTTP; gRPC would add @grpc/grpc-js (~5 MB, and its load time) for no gain behind a local collector. */
export type OtlpProtocol = "http/protobuf" | "http/json";
export type Propagator = "tracecontext" | "baggage";
export type SamplerName = "always_on" | "always_off" | "traceidratio" | "parentbased_always_on" | "parentbased_always_off" | "parentbased_traceidratio";

export interface TracingSettings {
  exporters: TracesExporter[];
  protocol: OtlpProtocol;
  /** Empty for OTEL_PROPAGATORS=none: no context is read from requests or written into jobs. */
  propagators: Propagator[];
  /** Unset: the SDK's default, parent-based always-on. */
  sampler?: { name: SamplerName; ratio: number };
  batch: { scheduledDelayMillis?: number; exportTimeoutMillis?: number; maxQueueSize?: number; maxExportBatchSize?: number };
}

export class TracingSettingsError extends Error {
  override name = "TracingSettingsError";
}

const SAMPLERS: readonly SamplerName[] = ["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"];

/**
 * Whether to start the OpenTelemetry SDK: only when an exporter is configured (an OTLP endpoint, or
 * OTEL_TRACES_EXPORTER other than `none`). Without one the service creates no spans at all.
 */
export function tracingEnabled(environment: Environment): boolean {
  const exporter = value(environment, "OTEL_TRACES_EXPORTER");
  if (exporter) return !list(exporter).includes("none");
  return Boolean(value(environment, "OTEL_EXPORTER_OTLP_ENDPOINT") || value(environment, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
}

/** Pure: the variables in, the settings out, or a TracingSettingsError naming the variable. */
export function parseTracingSettings(environment: Environment): TracingSettings {
  const exporters = list(value(environment, "OTEL_TRACES_EXPORTER") ?? "otlp");
  for (const exporter of exporters) {
    if (exporter !== "otlp" && exporter !== "console") fail("OTEL_TRACES_EXPORTER", exporter, "otlp, console or none");
  }
  const protocolVariable = value(environment, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const protocol = value(environment, protocolVariable) ?? "http/protobuf";
  if (protocol !== "http/protobuf" && protocol !== "http/json") fail(protocolVariable, protocol, "http/protobuf or http/json (gRPC is not supported)");

  // The spec's default; "none" in the list turns propagation off altogether.
  const propagatorNames = list(value(environment, "OTEL_PROPAGATORS") ?? "tracecontext,baggage");
  const propagators: Propagator[] = [];
  if (!propagatorNames.includes("none")) {
    for (const name of propagatorNames) {
      if (name !== "tracecontext" && name !== "baggage") fail("OTEL_PROPAGATORS", name, "tracecontext, baggage or none");
      if (!propagators.includes(name)) propagators.push(name);
    }
  }

  const samplerName = value(environment, "OTEL_TRACES_SAMPLER");
  let sampler: TracingSettings["sampler"];
  if (samplerName) {
    if (!SAMPLERS.includes(samplerName as SamplerName)) fail("OTEL_TRACES_SAMPLER", samplerName, SAMPLERS.join(", "));
    const argument = value(environment, "OTEL_TRACES_SAMPLER_ARG");
    const ratio = argument === undefined ? 1 : Number(argument);
    if (samplerName.endsWith("traceidratio") && !(Number.isFinite(ratio) && ratio >= 0 && ratio <= 1)) {
      fail("OTEL_TRACES_SAMPLER_ARG", argument ?? "", "a number from 0 to 1");
    }
    sampler = { name: samplerName as SamplerName, ratio };
  }

  const batch: TracingSettings["batch"] = {};
  for (const [variable, key] of [
    ["OTEL_BSP_SCHEDULE_DELAY", "scheduledDelayMillis"],
    ["OTEL_BSP_EXPORT_TIMEOUT", "exportTimeoutMillis"],
    ["OTEL_BSP_MAX_QUEUE_SIZE", "maxQueueSize"],
    ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "maxExportBatchSize"],
  ] as const) {
    const text = value(environment, variable);
    if (text === undefined) continue;
    const number = Number(text);
    if (!Number.isInteger(number) || number < (key === "scheduledDelayMillis" ? 0 : 1)) fail(variable, text, "a whole number of milliseconds or spans");
    batch[key] = number;
  }
  return { exporters: exporters as TracesExporter[], protocol, propagators, ...(sampler ? { sampler } : {}), batch };
}

/** Empty counts as unset, as in config.ts. */
function value(environment: Environment, name: string): string | undefined {
  const text = environment[name]?.trim();
  return text ? text : undefined;
}

function list(text: string): string[] {
  return text
    .split(",")
    .map((item) => item.trim().toLowerCase())
    .filter(Boolean);
}

function fail(variable: string, given: string, expected: string): never {
  throw new TracingSettingsError(`Invalid configuration: ${variable} must be ${expected}, got "${given}"`);
}
