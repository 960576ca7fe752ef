/**
 * The OpenTelemetry API, from its CommonJS build. prom-client requires that build at start-up (for
 * exemplars), so importing the ES module build as well would load the API twice: ~50 more modules
 * for nothing. One copy also means one set of globals for every caller. Types come from the package
 * as usual (`import type`).
 */
import { createRequire } from "node:module";
import type * as OpenTelemetryApi from "@opentelemetry/api";

const api = createRequire(import.meta.url)("@opentelemetry/api") as typeof OpenTelemetryApi;

export const { context, diag, DiagConsoleLogger, DiagLogLevel, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } = api;
