/**
 * Text and JSON as PostgreSQL stores them: `text` and `jsonb` refuse NUL (U+0000), and a lone
 * UTF-16 surrogate cannot be encoded as UTF-8. Both can arrive from a task's error message, a
 * payload added by plain SQL (`json` accepts `\u0000`) or an upstream answer.
 */

// A NUL, or a surrogate half without its partner (matching NUL is the point of this expression).
// eslint-disable-next-line no-control-regex
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** NUL removed, lone surrogates replaced by U+FFFD. */
export function storableText(text: string): string {
  return text.replace(UNSTORABLE, (match) => (match === "\u0000" ? "" : "\uFFFD"));
}

/** Whether the text holds something PostgreSQL would refuse. */
export function hasUnstorableText(text: string): boolean {
  UNSTORABLE.lastIndex = 0;
  const found = UNSTORABLE.test(text);
  UNSTORABLE.lastIndex = 0;
  return found;
}

/** A JSON value with every string (keys included) made storable. */
export function storableJson(value: unknown): unknown {
  if (typeof value === "string") return storableText(value);
  if (Array.isArray(value)) return value.map(storableJson);
  if (!value || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(([key, child]) => [storableText(key), storableJson(child)]));
}
