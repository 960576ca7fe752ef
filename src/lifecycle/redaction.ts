/**
 * What of a payload (or a job's result) may be stored and shown: fields a task marks sensitive, and
 * any field whose name says it is a secret, are replaced; a payload over the size bound is replaced
 * by a summary.
 */
const REDACTED = "[redacted]";

const SECRET_NAME = /pass(word)?|secret|token|api[-_]?key|authorization|credential/i;

export function redactPayload(payload: unknown, sensitivePaths: readonly string[], maxBytes: number): unknown {
  const redacted = redactFields(payload, sensitivePaths);
  const text = JSON.stringify(redacted) ?? "null";
  const bytes = Buffer.byteLength(text);
  if (bytes <= maxBytes) return redacted;
  return { _truncated: true, bytes, preview: text.slice(0, Math.min(1024, maxBytes)) };
}

/** The value with the sensitive fields (dotted paths) and secret-named fields replaced, and no size bound. */
export function redactFields(value: unknown, sensitivePaths: readonly string[]): unknown {
  return redactValue(value, "", new Set(sensitivePaths));
}

function redactValue(value: unknown, path: string, sensitive: ReadonlySet<string>): unknown {
  if (Array.isArray(value)) return value.map((item) => redactValue(item, path, sensitive));
  if (!value || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, child]) => {
      const childPath = path ? `${path}.${key}` : key;
      if (sensitive.has(childPath) || SECRET_NAME.test(key)) return [key, REDACTED];
      return [key, redactValue(child, childPath, sensitive)];
    }),
  );
}
