/**
 * deploy/otel-collector.yaml, the configuration of the collector sidecar (terraform/telemetry.tf).
 * No collector binary is packaged for Debian, so the file is checked the way the collector would
 * refuse it at start-up: it parses, every pipeline names components that are defined, every defined
 * component is used, and each is a component the pinned Google-Built collector ships.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { describe, expect, test } from "vitest";
import { PROJECT_ROOT } from "../helpers/service-process.ts";

interface CollectorConfig {
  receivers: Record<string, unknown>;
  processors: Record<string, unknown>;
  exporters: Record<string, unknown>;
  extensions: Record<string, unknown>;
  service: {
    extensions: string[];
    pipelines: Record<string, { receivers: string[]; processors: string[]; exporters: string[] }>;
  };
}

const config = parse(readFileSync(path.join(PROJECT_ROOT, "deploy/otel-collector.yaml"), "utf8")) as CollectorConfig;
const pipelines = Object.entries(config.service.pipelines);

/**
 * The component types of the Google-Built OpenTelemetry Collector that this file may use, from the
 * distribution's manifest (google-built-opentelemetry-collector/manifest.yaml) at the pinned 0.160.0.
 * A component outside this list would stop the sidecar at start-up.
 */
const SHIPPED = {
  receivers: ["otlp", "prometheus", "filelog", "hostmetrics", "httpcheck"],
  processors: ["batch", "memory_limiter", "resourcedetection", "resource", "transform", "filter", "attributes", "metricstransform"],
  exporters: ["googlecloud", "googlemanagedprometheus", "otlp", "otlphttp", "debug"],
  extensions: ["health_check", "healthcheckv2"],
};
/** A component id is `type` or `type/name`. */
const typeOf = (id: string) => id.split("/")[0]!;

describe("deploy/otel-collector.yaml", () => {
  test("has a traces and a metrics pipeline, each with receivers and exporters", () => {
    expect(Object.keys(config.service.pipelines).sort()).toEqual(["metrics", "traces"]);
    for (const [name, pipeline] of pipelines) {
      expect(pipeline.receivers.length, name).toBeGreaterThan(0);
      expect(pipeline.exporters.length, name).toBeGreaterThan(0);
    }
  });

  test("every pipeline names only receivers, processors and exporters that are defined", () => {
    for (const [name, pipeline] of pipelines) {
      for (const kind of ["receivers", "processors", "exporters"] as const) {
        for (const id of pipeline[kind]) expect(Object.keys(config[kind]), `${name} pipeline: ${kind} ${id}`).toContain(id);
      }
    }
    for (const id of config.service.extensions) expect(Object.keys(config.extensions), `extension ${id}`).toContain(id);
  });

  test("every defined component is used, so nothing configured is silently ignored", () => {
    for (const kind of ["receivers", "processors", "exporters"] as const) {
      const used = new Set(pipelines.flatMap(([, pipeline]) => pipeline[kind]));
      for (const id of Object.keys(config[kind])) expect(used.has(id), `${kind} ${id}`).toBe(true);
    }
    expect(Object.keys(config.extensions).sort()).toEqual([...config.service.extensions].sort());
  });

  test("uses only components the pinned Google-Built collector ships", () => {
    for (const kind of ["receivers", "processors", "exporters", "extensions"] as const) {
      for (const id of Object.keys(config[kind])) expect(SHIPPED[kind], `${kind} ${id}`).toContain(typeOf(id));
    }
  });

  test("limits memory first and batches last in every pipeline, as the collector recommends", () => {
    for (const [name, pipeline] of pipelines) {
      expect(pipeline.processors[0], name).toBe("memory_limiter");
      expect(pipeline.processors.at(-1), name).toBe("batch");
    }
  });

  test("traces go to Cloud Trace, metrics to Managed Service for Prometheus, each instance's series apart", () => {
    expect(config.service.pipelines.traces).toMatchObject({ receivers: ["otlp"], exporters: ["googlecloud"] });
    expect(config.service.pipelines.metrics).toMatchObject({ receivers: ["prometheus"], exporters: ["googlemanagedprometheus"] });
    // Every instance scrapes localhost:8080; without Cloud Run's instance id their series would collide.
    const metricsProcessors = config.service.pipelines.metrics!.processors;
    expect(metricsProcessors.indexOf("resourcedetection")).toBeLessThan(metricsProcessors.indexOf("resource/instance"));
    expect(config.processors["resource/instance"]).toEqual({
      attributes: [{ key: "service.instance.id", from_attribute: "faas.instance", action: "upsert" }],
    });
    expect(config.processors.resourcedetection).toMatchObject({ detectors: expect.arrayContaining(["gcp"]) });
  });

  test("listens for OTLP on localhost only: the service beside it is the only sender", () => {
    const { grpc, http } = (config.receivers.otlp as { protocols: Record<string, { endpoint: string }> }).protocols;
    expect(grpc!.endpoint).toMatch(/^localhost:\d+$/);
    expect(http!.endpoint).toMatch(/^localhost:\d+$/);
  });
});
