/**
 * The last line of defence behind input validation: database errors that mean "the request held a
 * value PostgreSQL cannot take" become a 400, and database errors are logged without the parts
 * that quote the data. PostgreSQL's `detail`, `where`, `hint` and `internalQuery` fields (and the
 * value some messages end with) carry payload text, e.g. `JSON data, line 1: {"kingdom":"a\u0000…`.
 */
import pg from "pg";
import { HttpError } from "./errors.ts";

/** SQLSTATE codes of bad values (class 22, data exception), with what the caller is told. */
const CLIENT_VALUE_ERRORS: Record<string, string> = {
  "22P05": "the request holds text the database cannot store (a NUL character or an invalid Unicode escape)",
  "22021": "the request holds text the database cannot store (a NUL character or a byte sequence that is not UTF-8)",
  "22P02": "a value in the request is not valid for the database (a malformed number, date or JSON text)",
  "22003": "a number in the request is outside the range the database stores",
  "22008": "a date in the request is outside the range the database stores",
  "22007": "a date in the request is not a valid date and time",
  "22001": "a value in the request is longer than the database stores",
};

/** Fields of a pg DatabaseError that quote the data. */
const DATA_FIELDS = ["detail", "where", "hint", "internalQuery", "internalPosition", "position"] as const;

function isDatabaseError(error: unknown): error is pg.DatabaseError {
  return error instanceof pg.DatabaseError;
}

/** A 400 for a database error caused by a value in the request, or null for any other error. */
export function clientErrorOf(error: unknown): HttpError | null {
  if (!isDatabaseError(error) || !error.code) return null;
  const message = CLIENT_VALUE_ERRORS[error.code];
  return message ? new HttpError(400, message) : null;
}

/**
 * The error as it may be logged: a database error loses the fields that quote data, and a data
 * exception the values its message quotes (`invalid input syntax for type bigint: "…"`); other
 * errors are kept as they are.
 */
export function loggableError(error: unknown): unknown {
  if (!isDatabaseError(error)) return error;
  const message = error.code?.startsWith("22") ? withoutQuotedValues(error.message) : error.message;
  const copy = new Error(message);
  copy.name = error.name;
  copy.stack = (error.stack ?? "").replace(error.message, message);
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) {
    if ((DATA_FIELDS as readonly string[]).includes(key) || value === undefined) continue;
    kept[key] = value;
  }
  return Object.assign(copy, kept, { message });
}

/** Data exceptions quote the value they refused (`value "…" is out of range for type bigint`). */
function withoutQuotedValues(message: string): string {
  return message.replace(/"(?:[^"]|"")*"/g, '"[redacted]"');
}
