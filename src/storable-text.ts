/**
 * Text that PostgreSQL can store. Two things in a JavaScript string cannot be stored as `text` or
 * `jsonb`: the NUL character (U+0000; `text` refuses it, `jsonb` refuses the `\u0000` escape) and
 * a lone UTF-16 surrogate (not a Unicode character at all; `json` parsing refuses the escape JSON.stringify
 * writes for it). An error message or a payload that carries one makes the statement storing it
 * fail: in graphile-worker's `failJob` that ends the worker pool, in job history it blocks the
 * flush. Everything that stores text it did not write itself (error messages, stacks, payloads)
 * passes it through here first.
 *
 * A leaf module: it imports nothing, so any layer may use it.
 */

/** What replaces a lone surrogate: U+FFFD REPLACEMENT CHARACTER, as `String.prototype.toWellFormed` does. */
export const REPLACEMENT_CHARACTER = "\uFFFD";

/** True when `text` holds a NUL or a lone surrogate. */
export function needsSanitizing(text: string): boolean {
  return text.includes("\u0000") || !text.isWellFormed();
}

/** `text` without NUL characters and with every lone surrogate replaced by U+FFFD. Unchanged text is returned as is. */
export function sanitizeText(text: string): string {
  if (!needsSanitizing(text)) return text;
  return text.replaceAll("\u0000", "").toWellFormed();
}

/**
 * A JSON-like value with every string (object keys included) sanitized. Returns the same value
 * when nothing needed changing, so the common case allocates nothing.
 */
export function sanitizeJson<T>(value: T): T {
  return sanitizeValue(value) as T;
}

function sanitizeValue(value: unknown): unknown {
  if (typeof value === "string") return sanitizeText(value);
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item = sanitizeValue(value[i]);
      if (item !== value[i]) (copy ??= [...value])[i] = item;
    }
    return copy ?? value;
  }
  if (value === null || typeof value !== "object" || !isPlainObject(value)) return value;
  let changed = false;
  const entries = Object.entries(value).map(([key, child]) => {
    const cleanKey = sanitizeText(key);
    const cleanChild = sanitizeValue(child);
    if (cleanKey !== key || cleanChild !== child) changed = true;
    return [cleanKey, cleanChild] as const;
  });
  return changed ? Object.fromEntries(entries) : value;
}

function isPlainObject(value: object): boolean {
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}

/**
 * The error with its message and stack sanitized (and its `cause` chain, to a few levels). The
 * same Error object is changed in place when it can be, so `instanceof` checks and extra fields
 * survive; anything thrown that is not an Error becomes one, with its text sanitized.
 */
export function sanitizeError(error: unknown, depth = 0): Error {
  if (!(error instanceof Error)) return new Error(sanitizeText(String(error)));
  const message = sanitizeText(error.message);
  if (message !== error.message && !trySet(error, "message", message)) {
    const copy = new Error(message, { cause: error.cause });
    copy.name = error.name;
    if (error.stack !== undefined) copy.stack = sanitizeText(error.stack);
    return copy;
  }
  if (typeof error.stack === "string") {
    const stack = sanitizeText(error.stack);
    if (stack !== error.stack) trySet(error, "stack", stack);
  }
  if (depth < 5 && error.cause !== undefined && (error.cause instanceof Error || typeof error.cause === "string")) {
    const cause = error.cause instanceof Error ? sanitizeError(error.cause, depth + 1) : sanitizeText(error.cause);
    if (cause !== error.cause) trySet(error, "cause", cause);
  }
  return error;
}

function trySet(target: object, key: string, value: unknown): boolean {
  try {
    Object.defineProperty(target, key, { value, writable: true, configurable: true, enumerable: false });
    return true;
  } catch {
    return false;
  }
}
