/**
 * An OpenTelemetry collector for tests: a real HTTP server taking OTLP/HTTP JSON exports
 * (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) on /v1/traces and keeping the spans.
 */
import http from "node:http";
import { closeServer, listenOnLoopback } from "../../src/demo/loopback.ts";

/** OTLP's span kinds (opentelemetry-proto trace.proto). */
export const SPAN_KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;

export interface ExportedSpan {
  scope: string;
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  /** W3C tracestate of the span's context ("" when none). */
  traceState: string;
  links: Array<{ traceId: string; spanId: string; traceState?: string }>;
  attributes: Record<string, unknown>;
  status?: { code?: number; message?: string };
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}

export class FakeOtlpCollector {
  readonly spans: ExportedSpan[] = [];
  url = "";
  #server = http.createServer((request, response) => {
    let body = "";
    request.on("data", (chunk: Buffer) => (body += chunk.toString()));
    request.on("end", () => {
      if (request.url === "/v1/traces") this.#take(JSON.parse(body));
      response.writeHead(200, { "content-type": "application/json" });
      response.end("{}");
    });
  });

  async start(): Promise<this> {
    this.url = await listenOnLoopback(this.#server);
    return this;
  }

  async stop(): Promise<void> {
    await closeServer(this.#server);
  }

  #take(body: { resourceSpans?: Array<{ scopeSpans: Array<{ scope: { name: string }; spans: Array<Record<string, unknown>> }> }> }): void {
    for (const resource of body.resourceSpans ?? []) {
      for (const { scope, spans } of resource.scopeSpans) {
        for (const span of spans) {
          const attributes = Object.fromEntries(
            ((span.attributes as Array<{ key: string; value: OtlpValue }>) ?? []).map(({ key, value }) => [
              key,
              value.stringValue ?? (value.intValue === undefined ? undefined : Number(value.intValue)) ?? value.boolValue ?? value.doubleValue,
            ]),
          );
          this.spans.push({
            scope: scope.name,
            name: span.name as string,
            kind: span.kind as number,
            traceId: span.traceId as string,
            spanId: span.spanId as string,
            ...(span.parentSpanId ? { parentSpanId: span.parentSpanId as string } : {}),
            traceState: (span.traceState as string | undefined) ?? "",
            links: (span.links as ExportedSpan["links"]) ?? [],
            attributes,
            status: span.status as ExportedSpan["status"],
          });
        }
      }
    }
  }
}
