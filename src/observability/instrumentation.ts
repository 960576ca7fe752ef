/**
 * OpenTelemetry, loaded before anything else: `node --import ./src/observability/instrumentation.ts
 * src/main.ts` (the npm start script and the image's command do this). The exporter is configured by
 * the standard OTEL_* variables (tracing-settings.ts); with none set this module loads nothing more
 * and tracing costs nothing. With one, the trace SDK and the instrumentations start here
 * (tracing-sdk.ts), before the modules they patch are loaded.
 */
import { onTelemetryShutdown } from "./telemetry.ts";
import { parseTracingSettings, tracingEnabled, TracingSettingsError } from "./tracing-settings.ts";

// This entry point runs before src/config.ts (the one reader of every other setting) is loaded,
// and hands the OTEL_* variables to the tracing settings.
// eslint-disable-next-line no-restricted-properties
const environment = process.env;

if (tracingEnabled(environment)) {
  let settings;
  try {
    settings = parseTracingSettings(environment);
  } catch (error) {
    if (!(error instanceof TracingSettingsError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  const [{ startTracing }, { SERVICE_VERSION }] = await Promise.all([import("./tracing-sdk.ts"), import("../config.ts")]);
  onTelemetryShutdown(await startTracing(settings, { name: "observing-jobs", version: SERVICE_VERSION }));
}
