/**
 * What PostgreSQL can store, checked at the edge so that bad input is a 400 (or a CLI error) naming
 * the field, never a database error: text without NUL and without lone surrogates (which are not
 * Unicode at all: UTF-8 cannot encode them), ids within `bigint`, integers within their columns,
 * and dates that are real instants JavaScript and PostgreSQL both hold and print as RFC 3339.
 * The HTTP validators, the task payload validator and the dashboard's forms all use these. Text the
 * service writes itself (error messages, results) is made storable instead: src/storable-text.ts.
 */
import type { Ajv } from "ajv";
import { fullFormats } from "ajv-formats/dist/formats.js";
import { needsSanitizing } from "./storable-text.ts";

// ajv-formats' full RFC 3339 check (calendar days, time fields, offsets); the stricter rules are added below.
const rfc3339DateTime = fullFormats["date-time"] as { validate: (text: string) => boolean };

/** PostgreSQL's `integer` (taxa ids, observation counts). */
export const INT4_MAX = 2_147_483_647;
/** PostgreSQL's `bigint` (job ids). */
export const INT8_MAX = 9_223_372_036_854_775_807n;

/** A problem with one string inside a value, and where it is (a JSON pointer, "" for the value itself). */
export interface TextProblem {
  path: string;
  message: string;
}

/** Why PostgreSQL would refuse this text, or null when it can store it (storable-text.ts's two cases). */
export function textProblem(text: string): string | null {
  if (!needsSanitizing(text)) return null;
  return text.includes("\0") ? "must not contain NUL characters" : "must be valid Unicode (it holds a lone surrogate)";
}

/**
 * The first string (value or property name) in a JSON-like value that PostgreSQL cannot store.
 * Iterative, so a deeply nested body cannot exhaust the stack; URLSearchParams count as objects.
 */
export function findUnstorableText(value: unknown): TextProblem | null {
  const stack: Array<{ value: unknown; path: string }> = [{ value, path: "" }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    const current = item.value;
    if (typeof current === "string") {
      const message = textProblem(current);
      if (message) return { path: item.path, message };
      continue;
    }
    if (!current || typeof current !== "object") continue;
    const entries: Iterable<[string, unknown]> =
      current instanceof URLSearchParams ? current.entries() : Array.isArray(current) ? current.map((v, i) => [String(i), v]) : Object.entries(current);
    for (const [key, child] of entries) {
      const keyProblem = textProblem(key);
      if (keyProblem) return { path: item.path, message: `has a property name that ${keyProblem}` };
      stack.push({ value: child, path: `${item.path}/${escapePointer(key)}` });
    }
  }
  return null;
}

function escapePointer(key: string): string {
  return key.replaceAll("~", "~0").replaceAll("/", "~1");
}

/** A regular expression source matching the decimal integers 1..max, written without leading zeros. */
export function decimalRangePattern(max: bigint): string {
  const digits = max.toString();
  const alternatives: string[] = [];
  // Shorter numbers are all below max.
  if (digits.length > 1) alternatives.push(`[1-9][0-9]{0,${digits.length - 2}}`);
  // As long as max: equal to it up to position i, then a smaller digit, then anything.
  for (let i = 0; i < digits.length; i++) {
    const digit = Number(digits[i]);
    const lowest = i === 0 ? 1 : 0;
    if (digit > lowest) {
      const rest = digits.length - i - 1;
      alternatives.push(`${digits.slice(0, i)}[${lowest}-${digit - 1}]${rest > 0 ? `[0-9]{${rest}}` : ""}`);
    }
  }
  alternatives.push(digits);
  return `^(?:${alternatives.join("|")})$`;
}

/** A job id as the API writes it: 1 to PostgreSQL's largest bigint, in decimal. */
export const JOB_ID_PATTERN = decimalRangePattern(INT8_MAX);
const JOB_ID = new RegExp(JOB_ID_PATTERN);

export function isJobId(text: string): boolean {
  return JOB_ID.test(text);
}

/** The instants every part of the service can hold and print as RFC 3339 with a four-digit year. */
const FIRST_INSTANT = new Date("0001-01-01T00:00:00.000Z").getTime();
const LAST_INSTANT = new Date("9999-12-31T23:59:59.999Z").getTime();

/**
 * An RFC 3339 date-time as a Date, or null when it is not one or not a real instant within
 * 0001-01-01 and 9999-12-31 UTC: leap seconds (:60) have no JavaScript Date, year 0000 does not
 * exist in PostgreSQL, and an offset can carry a valid-looking time outside those years.
 */
export function parseInstant(text: string): Date | null {
  if (!rfc3339DateTime.validate(text)) return null;
  const normalised = text.toUpperCase().replace(" ", "T");
  if (/T\d{2}:\d{2}:60/.test(normalised) || normalised.startsWith("0000-")) return null;
  const time = new Date(normalised).getTime();
  if (Number.isNaN(time) || time < FIRST_INSTANT || time > LAST_INSTANT) return null;
  return new Date(time);
}

export const DATE_TIME_DESCRIPTION = "RFC 3339 date-time with a time zone, between 0001-01-01 and 9999-12-31 UTC; leap seconds (:60) are refused";

/** Makes an ajv instance's `date-time` format the stricter one above. */
export function useStorableDateTimes(ajv: Ajv): void {
  ajv.addFormat("date-time", { type: "string", validate: (text: string) => parseInstant(text) !== null });
}
