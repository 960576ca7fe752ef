/**
 * The "run now" form, generated from a task's payload JSON Schema: one input per property, chosen
 * by its type. What the operator typed is turned back into a payload without judging it (a number
 * field holding "abc" stays the text "abc"), so the errors shown are those of the one server-side
 * validation every enqueue goes through ("payload/limit must be integer").
 */
import type { TSchema } from "typebox";
import { html, type Html } from "./html.ts";
import type { JsonSchema } from "../../json-schema.ts";

export type FieldKind = "integer" | "number" | "string" | "boolean" | "enum" | "integer-list" | "string-list" | "json";

/** What a field shows of its schema: its description, default and bounds. */
type FieldHints = Pick<JsonSchema, "description" | "default" | "minimum" | "maximum" | "minLength" | "maxLength">;

export interface FormField extends FieldHints {
  /** The payload property. */
  name: string;
  kind: FieldKind;
  required: boolean;
  /** The allowed values of an enum. */
  options?: unknown[];
}

/** Input names are `payload.<property>`, apart from the job options beside them. */
const PAYLOAD_PREFIX = "payload.";

/** The enum values of a property: `enum: [...]`, or a union of constants (TypeBox's Union of Literals). */
function enumValues(schema: JsonSchema): unknown[] | undefined {
  if (schema.enum) return schema.enum;
  if (schema.anyOf && schema.anyOf.length > 0 && schema.anyOf.every((member) => "const" in member)) return schema.anyOf.map((member) => member.const);
  return undefined;
}

function kindOf(schema: JsonSchema): FieldKind {
  if (enumValues(schema)) return "enum";
  switch (schema.type) {
    case "integer":
      return "integer";
    case "number":
      return "number";
    case "string":
      return "string";
    case "boolean":
      return "boolean";
    case "array":
      if (schema.items?.type === "integer" || schema.items?.type === "number") return "integer-list";
      if (schema.items?.type === "string" && !enumValues(schema.items)) return "string-list";
      return "json";
    default:
      // Objects, unions and anything else: typed as JSON, checked by the same validation.
      return "json";
  }
}

export function fieldsFromSchema(schema: TSchema): FormField[] {
  const root = schema as JsonSchema;
  const required = new Set(root.required ?? []);
  return Object.entries(root.properties ?? {}).map(([name, property]) => {
    const field: FormField = { name, kind: kindOf(property), required: required.has(name) };
    if (property.description !== undefined) field.description = property.description;
    if (property.default !== undefined) field.default = property.default;
    if (property.minimum !== undefined) field.minimum = property.minimum;
    if (property.maximum !== undefined) field.maximum = property.maximum;
    if (property.minLength !== undefined) field.minLength = property.minLength;
    if (property.maxLength !== undefined) field.maxLength = property.maxLength;
    const options = enumValues(property);
    if (options) field.options = options;
    return field;
  });
}

const NUMBER = /^-?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** A typed value where the text is one; the text itself otherwise, for validation to name. */
function parseNumber(text: string): number | string {
  return NUMBER.test(text) ? Number(text) : text;
}

export interface ParsedForm {
  payload: Record<string, unknown>;
  /** What was typed, per property, to show the form again. */
  values: Record<string, string>;
  /** Problems found before validation could run (JSON that does not parse). */
  errors: string[];
}

/** The payload the form describes: empty inputs are left out, so the task's defaults apply. */
export function payloadFromForm(fields: FormField[], form: URLSearchParams): ParsedForm {
  const payload: Record<string, unknown> = {};
  const values: Record<string, string> = {};
  const errors: string[] = [];
  for (const field of fields) {
    const raw = form.get(PAYLOAD_PREFIX + field.name) ?? "";
    values[field.name] = raw;
    const text = raw.trim();
    if (text === "") continue;
    switch (field.kind) {
      case "integer":
      case "number":
        payload[field.name] = parseNumber(text);
        break;
      case "boolean":
        payload[field.name] = text === "true" ? true : text === "false" ? false : text;
        break;
      case "enum":
        payload[field.name] = field.options?.find((option) => String(option) === text) ?? text;
        break;
      case "integer-list":
        payload[field.name] = splitList(text).map(parseNumber);
        break;
      case "string-list":
        payload[field.name] = splitList(text);
        break;
      case "string":
        payload[field.name] = raw;
        break;
      case "json":
        try {
          payload[field.name] = JSON.parse(text);
        } catch {
          errors.push(`payload/${field.name} is not valid JSON`);
        }
        break;
    }
  }
  return { payload, values, errors };
}

function splitList(text: string): string[] {
  return text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/** Validation messages that name a property, by property ("payload/limit must be …", "payload must have property 'x'"). */
export function errorsByField(errors: string[]): { byField: Map<string, string[]>; general: string[] } {
  const byField = new Map<string, string[]>();
  const general: string[] = [];
  for (const error of errors) {
    const name = /^payload\/([^/ ]+)/.exec(error)?.[1] ?? /^payload must have property '([^']+)'/.exec(error)?.[1];
    if (name) byField.set(name, [...(byField.get(name) ?? []), error]);
    else general.push(error);
  }
  return { byField, general };
}

const HINTS: Record<FieldKind, string> = {
  integer: "a whole number",
  number: "a number",
  string: "text",
  boolean: "",
  enum: "",
  "integer-list": "whole numbers, separated by commas",
  "string-list": "values separated by commas",
  json: "JSON",
};

export function renderFields(fields: FormField[], values: Record<string, string>, errors: Map<string, string[]>): Html {
  return html`${fields.map((field) => renderField(field, values[field.name] ?? "", errors.get(field.name) ?? []))}`;
}

function renderField(field: FormField, value: string, errors: string[]): Html {
  const id = `field-${field.name}`;
  const name = PAYLOAD_PREFIX + field.name;
  const describedBy = [`${id}-help`, errors.length > 0 ? `${id}-errors` : ""].filter(Boolean).join(" ");
  const invalid = errors.length > 0 ? html` aria-invalid="true"` : "";
  const required = field.required ? html` required` : "";
  const common = html`id="${id}" name="${name}" aria-describedby="${describedBy}"${invalid}${required}`;
  let input: Html;
  switch (field.kind) {
    case "integer":
    case "number":
      // Text with a numeric keyboard rather than type=number: the browser would silently drop
      // "1.5" or "abc" and the operator would never see why the job did not get them.
      input = html`<input type="text" inputmode="${field.kind === "integer" ? "numeric" : "decimal"}" ${common} value="${value}">`;
      break;
    case "boolean":
    case "enum": {
      const options = field.kind === "boolean" ? [true, false] : (field.options ?? []);
      input = html`<select ${common}>
        <option value="">${field.required ? "choose…" : `default${field.default !== undefined ? ` (${String(field.default)})` : ""}`}</option>
        ${options.map((option) => html`<option value="${String(option)}"${String(option) === value ? html` selected` : ""}>${String(option)}</option>`)}
      </select>`;
      break;
    }
    case "json":
      input = html`<textarea ${common} rows="3" spellcheck="false">${value}</textarea>`;
      break;
    default:
      input = html`<input type="text" ${common} value="${value}"${field.kind === "string" && field.maxLength !== undefined ? html` maxlength="${field.maxLength}"` : ""}>`;
  }
  const limits = [
    HINTS[field.kind],
    field.minimum !== undefined ? `min ${field.minimum}` : "",
    field.maximum !== undefined ? `max ${field.maximum}` : "",
    field.minLength !== undefined ? `at least ${field.minLength} characters` : "",
    field.kind !== "boolean" && field.kind !== "enum" && field.default !== undefined ? `default ${JSON.stringify(field.default)}` : "",
    field.required ? "required" : "optional",
  ].filter(Boolean);
  return html`<div class="field${errors.length > 0 ? " field-invalid" : ""}">
    <label for="${id}">${field.name}</label>
    ${input}
    <p class="help" id="${id}-help">${field.description ? html`${field.description} ` : ""}<span class="muted">(${limits.join(", ")})</span></p>
    ${errors.length > 0 ? html`<ul class="field-errors" id="${id}-errors">${errors.map((error) => html`<li>${error}</li>`)}</ul>` : ""}
  </div>`;
}
