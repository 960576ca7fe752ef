/**
 * Payload validation shared by the worker, the crontab check, the CLI and enqueueing: one ajv
 * instance, errors that name each bad field.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import type { TSchema } from "typebox";
import { findUnstorableText, INT8_MAX, JOB_ID_PATTERN, useStorableDateTimes } from "./input-limits.ts";

// validateSchema off: the task schemas are built by TypeBox and compiled by the tests of every task;
// checking them against the meta-schema would first compile the meta-schema, at every start.
const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, coerceTypes: false, validateSchema: false });
addFormats.default(ajv);
useStorableDateTimes(ajv);

export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: string[] };

export type PayloadValidator<T> = (payload: unknown) => ValidationResult<T>;

/** Compiled on its first use: most tasks' payloads are not validated until a job of theirs is enqueued or runs. */
export function compilePayloadValidator<T>(schema: TSchema): PayloadValidator<T> {
  let compiled: ValidateFunction | undefined;
  // Ajv fills in defaults where the schema declares them; only then does it change what it checks.
  let fillsDefaults = false;
  return (payload) => {
    if (!compiled) {
      compiled = ajv.compile(schema);
      fillsDefaults = declaresDefaults(schema);
    }
    const validate = compiled;
    // Text the database cannot store is refused here, whatever the schema says about it.
    const text = findUnstorableText(payload);
    if (text) return { ok: false, errors: [`payload${text.path} ${text.message}`] };
    // Validate a copy when defaults are filled in, so the caller's object is left as it was. A
    // payload is JSON (it is stored as such), so a JSON copy is exact; structuredClone was 8% of
    // a single enqueue's CPU in a profile of POST /jobs/:task.
    const value: unknown = fillsDefaults && payload !== undefined ? JSON.parse(JSON.stringify(payload)) : payload;
    if (validate(value)) return { ok: true, value: value as T };
    return { ok: false, errors: (validate.errors ?? []).map((error) => describeSchemaError(error)) };
  };
}

/** Whether any part of the schema has a `default` (a property of that name is not one). */
function declaresDefaults(schema: unknown): boolean {
  if (Array.isArray(schema)) return schema.some(declaresDefaults);
  if (!schema || typeof schema !== "object") return false;
  return Object.entries(schema).some(([keyword, value]) =>
    keyword === "properties" && value && typeof value === "object" ? Object.values(value).some(declaresDefaults) : keyword === "default" || declaresDefaults(value),
  );
}

/** "payload/taxonIds/0 must be integer", "payload has unknown property 'x'". */
export function describeSchemaError(error: ErrorObject, root = "payload"): string {
  const at = `${root}${error.instancePath}`;
  switch (error.keyword) {
    case "additionalProperties":
      return `${at} has unknown property '${String(error.params.additionalProperty)}'`;
    case "required":
      return `${at} must have property '${String(error.params.missingProperty)}'`;
    case "pattern":
      if (error.params.pattern === JOB_ID_PATTERN) return `${at} must be a job id (a whole number from 1 to ${INT8_MAX})`;
      return `${at} ${error.message ?? "is invalid"}`;
    case "enum":
      return `${at} must be one of ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`;
    default:
      return `${at} ${error.message ?? "is invalid"}`;
  }
}
