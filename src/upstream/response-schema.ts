/**
 * Response validators of the upstream clients, compiled by Ajv on first use: a client's schemas
 * are needed when a job first calls its upstream, not when the service starts, and compiling the
 * eight of them at start-up was about a tenth of the service's start-up CPU (docs/BENCHMARKS.md,
 * "Lean process").
 */
import type { Ajv, ErrorObject } from "ajv";

export interface ResponseValidator<T> {
  (data: unknown): data is T;
  /** Ajv's errors of the last failed call. */
  errors: ErrorObject[] | null | undefined;
}

export function compileOnFirstUse<T>(ajv: Ajv, schema: object): ResponseValidator<T> {
  let compiled: ((data: unknown) => boolean) & { errors?: ErrorObject[] | null } | undefined;
  const validate = ((data: unknown) => {
    compiled ??= ajv.compile(schema);
    const valid = compiled(data);
    validate.errors = compiled.errors;
    return valid;
  }) as ResponseValidator<T>;
  validate.errors = null;
  return validate;
}
