import { describe, expect, test } from "vitest";
import { parseTracingSettings, tracingEnabled } from "../../src/observability/tracing-settings.ts";

describe("tracing settings (OTEL_*)", () => {
  test("tracing starts only when an exporter is configured", () => {
    expect(tracingEnabled({})).toBe(false);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: "" })).toBe(false);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4318" })).toBe(true);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://localhost:4318/v1/traces" })).toBe(true);
    expect(tracingEnabled({ OTEL_TRACES_EXPORTER: "console" })).toBe(true);
    expect(tracingEnabled({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4318" })).toBe(false);
  });

  test("defaults: OTLP over HTTP/protobuf, W3C trace context and baggage, the SDK's sampler", () => {
    expect(parseTracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4318" })).toEqual({
      exporters: ["otlp"],
      protocol: "http/protobuf",
      propagators: ["tracecontext", "baggage"],
      batch: {},
    });
  });

  test("the standard variables are honoured", () => {
    expect(
      parseTracingSettings({
        OTEL_TRACES_EXPORTER: "otlp, console",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json",
        OTEL_PROPAGATORS: "baggage,TraceContext,baggage",
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.25",
        OTEL_BSP_SCHEDULE_DELAY: "100",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "64",
      }),
    ).toEqual({
      exporters: ["otlp", "console"],
      protocol: "http/json",
      propagators: ["baggage", "tracecontext"],
      sampler: { name: "parentbased_traceidratio", ratio: 0.25 },
      batch: { scheduledDelayMillis: 100, maxExportBatchSize: 64 },
    });
    expect(parseTracingSettings({ OTEL_TRACES_EXPORTER: "otlp", OTEL_PROPAGATORS: "tracecontext,none" }).propagators).toEqual([]);
  });

  test("a value the service cannot honour fails at start-up, naming the variable", () => {
    const parse = (environment: Record<string, string>) => () => parseTracingSettings({ OTEL_TRACES_EXPORTER: "otlp", ...environment });
    expect(parse({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL must be http\/protobuf or http\/json \(gRPC is not supported\), got "grpc"/);
    expect(parse({ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" })).toThrow(/OTEL_EXPORTER_OTLP_TRACES_PROTOCOL/);
    expect(parse({ OTEL_TRACES_EXPORTER: "zipkin" })).toThrow(/OTEL_TRACES_EXPORTER must be otlp, console or none, got "zipkin"/);
    expect(parse({ OTEL_PROPAGATORS: "tracecontext,b3" })).toThrow(/OTEL_PROPAGATORS must be tracecontext, baggage or none, got "b3"/);
    expect(parse({ OTEL_TRACES_SAMPLER: "sometimes" })).toThrow(/OTEL_TRACES_SAMPLER must be always_on, .*got "sometimes"/);
    expect(parse({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "1.5" })).toThrow(/OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, got "1.5"/);
    expect(parse({ OTEL_BSP_SCHEDULE_DELAY: "soon" })).toThrow(/OTEL_BSP_SCHEDULE_DELAY must be a whole number/);
    expect(parse({ OTEL_BSP_MAX_QUEUE_SIZE: "0" })).toThrow(/OTEL_BSP_MAX_QUEUE_SIZE/);
  });
});
