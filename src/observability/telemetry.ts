/**
 * Lets the service flush telemetry on shutdown without importing the OpenTelemetry SDK itself
 * (which is only loaded when tracing is configured, by instrumentation.ts).
 */
const shutdowns: Array<() => Promise<void>> = [];

export function onTelemetryShutdown(shutdown: () => Promise<void>): void {
  shutdowns.push(shutdown);
}

/** Exports what is buffered (spans) and stops the exporters. Never throws. */
export async function shutdownTelemetry(): Promise<void> {
  await Promise.allSettled(shutdowns.splice(0).map((shutdown) => shutdown()));
}
