/**
 * Requests generated from an OpenAPI 3.1 document, as a hostile client would send them: values the
 * schemas allow (with their boundaries), and at any depth values they do not (wrong types, NUL, lone
 * surrogates, numbers past every column, impossible dates, huge strings, deep nesting), unknown
 * query parameters, odd ids, malformed or oversized bodies, bad UTF-8, missing credentials. And the
 * checks a contract tester makes of each answer: documented status, media type and body.
 */
import { Ajv, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import fc from "fast-check";
import type { JsonSchema as Schema } from "../../src/json-schema.ts";

interface Parameter {
  in: "query" | "path" | "header";
  name: string;
  required?: boolean;
  schema: Schema;
}

interface Operation {
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { headers?: Record<string, { schema: Schema }>; content?: Record<string, { schema: Schema }> }>;
}

export interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
}

/**
 * How many requests and which seed: FUZZ_REQUESTS (default 10,000) and FUZZ_SEED (a number, default
 * fixed so CI replays the same run; `random` for a fresh one, as `npm run fuzz` does).
 */
export function fuzzSettings(): { requests: number; seed: number } {
  const requests = Number(process.env.FUZZ_REQUESTS ?? 10_000);
  const seed = process.env.FUZZ_SEED === "random" ? Date.now() % 2 ** 31 : Number(process.env.FUZZ_SEED ?? 1919);
  if (!Number.isSafeInteger(requests) || requests < 1 || !Number.isSafeInteger(seed)) throw new Error("FUZZ_REQUESTS and FUZZ_SEED must be whole numbers (or FUZZ_SEED=random)");
  return { requests, seed };
}

export interface FuzzRequest {
  /** The documented operation, e.g. "POST /jobs/{id}/retry". */
  operation: string;
  method: "GET" | "POST";
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
}

/** Strings every text field meets sooner or later: what made the service answer 500 once, and worse. */
const HOSTILE_STRINGS = [
  "a\u0000b",
  "\u0000",
  "a\ud800b",
  "\udfff",
  "",
  " ",
  "0x10",
  "1e1",
  "+7",
  "-0",
  "NaN",
  "Infinity",
  "9223372036854775808",
  "99999999999999999999",
  "2016-12-31T23:59:60Z",
  "0000-01-01T00:00:00Z",
  "9999-12-31T23:59:59-23:59",
  "2021-02-29T00:00:00Z",
  "<script>alert(1)</script>",
  "'; drop table taxa; --",
  "%00",
  "../../etc/passwd",
  "Plantae",
  "plantae",
];

const HOSTILE_VALUES: unknown[] = [0, -1, 1e300, -1e300, 2147483648, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, 0.5, null, true, false, [], {}, [[[[]]]], { a: { b: { c: {} } } }];

/** Any text, lone surrogates and control characters included. */
const anyText = fc.oneof(fc.string({ unit: "binary", maxLength: 12 }), fc.string({ unit: "grapheme", maxLength: 12 }));

const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.constantFrom(...HOSTILE_STRINGS), weight: 4 },
  { arbitrary: fc.constantFrom(...HOSTILE_VALUES), weight: 3 },
  { arbitrary: anyText, weight: 2 },
  { arbitrary: fc.constantFrom("x", "\u00e9", "\ud800").map((unit) => unit.repeat(3000)), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 40 }).map((depth) => JSON.parse("[".repeat(depth) + "]".repeat(depth)) as unknown), weight: 1 },
);

/** The most items of a generated array: enough to cross boundaries, few enough to keep requests cheap. */
const MAX_GENERATED_ITEMS = 4;

/**
 * A JSON Schema's values with their boundaries, and (at any depth, now and then) values it refuses:
 * often at the top, rarely further in, so that a request with many fields still gets past validation
 * as often as not.
 */
export function valueOf(schema: Schema, nested = false): fc.Arbitrary<unknown> {
  return fc.oneof({ arbitrary: validValueOf(schema), weight: nested ? 30 : 6 }, { arbitrary: hostileValue, weight: 1 });
}

function validValueOf(schema: Schema): fc.Arbitrary<unknown> {
  if (schema.enum) return fc.constantFrom(...schema.enum);
  if ("const" in schema) return fc.constant(schema.const);
  const union = schema.anyOf ?? schema.oneOf;
  if (union) return fc.oneof(...union.map(validValueOf));
  if (Array.isArray(schema.type)) return fc.oneof(...schema.type.map((type) => validValueOf({ ...schema, type })));
  switch (schema.type) {
    case "integer": {
      const min = schema.minimum ?? -(2 ** 31);
      const max = schema.maximum ?? 2 ** 31;
      return fc.oneof({ arbitrary: fc.integer({ min, max }), weight: 8 }, { arbitrary: fc.constantFrom(min, max), weight: 2 }, { arbitrary: fc.constantFrom(min - 1, max + 1), weight: 1 });
    }
    case "number":
      return fc.double({ noNaN: true, noDefaultInfinity: true });
    case "boolean":
      return fc.boolean();
    case "string":
      return stringOf(schema);
    case "array": {
      const items = schema.items ? valueOf(schema.items, true) : fc.jsonValue({ maxDepth: 1 });
      const min = schema.minItems ?? 0;
      const max = Math.min(schema.maxItems ?? MAX_GENERATED_ITEMS, min + MAX_GENERATED_ITEMS);
      const distinct = fc.array(items, { minLength: min, maxLength: max });
      // Now and then an item twice: the same work twice in one batch (one job key, two payloads).
      const sized = fc.oneof({ arbitrary: distinct, weight: 6 }, { arbitrary: distinct.map((values) => (values.length > 0 && values.length < max ? [...values, values[0]] : values)), weight: 1 });
      // One past each end of the allowed size: refused without any item being looked at twice.
      const past = [...(min > 0 ? [fc.array(items, { minLength: min - 1, maxLength: min - 1 })] : []), ...(schema.maxItems ? [fc.constant(Array.from({ length: schema.maxItems + 1 }, () => ({})))] : [])];
      return past.length > 0 ? fc.oneof({ arbitrary: sized, weight: 8 }, ...past.map((arbitrary) => ({ arbitrary, weight: 1 }))) : sized;
    }
    case "object": {
      const properties = schema.properties ?? {};
      const required = schema.required ?? [];
      const record = fc.record(Object.fromEntries(Object.entries(properties).map(([name, property]) => [name, valueOf(property, true)])), {
        requiredKeys: required.filter((name) => name in properties),
      });
      // Now and then: a property no schema names, or a required one left out.
      return fc.oneof(
        { arbitrary: record, weight: 16 },
        { arbitrary: fc.tuple(record, anyText, hostileValue).map(([value, key, extra]) => ({ ...value, [key]: extra })), weight: 1 },
        { arbitrary: record.map((value) => Object.fromEntries(Object.entries(value).filter(([name]) => !required.includes(name)))), weight: required.length > 0 ? 1 : 0 },
      );
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

function stringOf(schema: Schema): fc.Arbitrary<string> {
  if (schema.format === "date-time") return dateTime;
  if (schema.pattern) return patterned(schema.pattern);
  const min = schema.minLength ?? 0;
  const max = Math.min(schema.maxLength ?? 24, min + 24);
  const edges = [...(schema.maxLength ? [fc.constant("k".repeat(schema.maxLength)), fc.constant("k".repeat(schema.maxLength + 1))] : []), ...(min > 0 ? [fc.constant("")] : [])];
  const plain = fc.oneof({ arbitrary: fc.string({ minLength: min, maxLength: max }), weight: 3 }, { arbitrary: fc.constantFrom("Plantae", "resolve_taxa", "wikidata", "iucn"), weight: 1 });
  return fc.oneof(
    { arbitrary: plain, weight: 14 },
    // Text that passes every length and type check and still holds what PostgreSQL cannot store.
    { arbitrary: withUnstorableCharacter(plain), weight: 2 },
    ...edges.map((arbitrary) => ({ arbitrary, weight: 1 })),
  );
}

/** The characters PostgreSQL's text and jsonb refuse, or UTF-8 cannot encode: NUL and lone surrogate halves. */
const UNSTORABLE_CHARACTERS = ["\u0000", "\ud800", "\udbff", "\udc00", "\udfff"];

/** A string with one unstorable character put in at any place (a string too short gets it appended). */
function withUnstorableCharacter(text: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(text, fc.constantFrom(...UNSTORABLE_CHARACTERS), fc.nat()).map(([value, character, at]) => {
    const index = value.length === 0 ? 0 : at % (value.length + 1);
    return value.slice(0, index) + character + value.slice(index);
  });
}

/** Dates around every edge the service draws: the years 0001 and 9999, leap days and seconds, odd offsets. */
const dateTime: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.date({ min: new Date("0001-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59.999Z"), noInvalidDate: true }).map((date) => date.toISOString()), weight: 4 },
  { arbitrary: fc.date({ min: new Date("2020-01-01T00:00:00Z"), max: new Date("2035-01-01T00:00:00Z"), noInvalidDate: true }).map((date) => date.toISOString()), weight: 4 },
  {
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 31 }), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 60 }), fc.constantFrom("Z", "z", "+00:00", "-23:59", "+23:59", "+14:00", "+0100", ""))
      .map(([year, month, day, hour, second, zone]) => `${String(year).padStart(4, "0")}-${pad(month)}-${pad(day)}T${pad(hour)}:59:${pad(second)}${zone}`),
    weight: 3,
  },
  { arbitrary: fc.constantFrom("2016-12-31T23:59:60Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "2024-02-29T12:00:00Z", "2030-01-01 00:00:00Z"), weight: 2 },
);

function pad(value: number): string {
  return String(value).padStart(2, "0");
}

/** The patterns in the document are the job id's: decimal integers, inside bigint and past it. */
function patterned(pattern: string): fc.Arbitrary<string> {
  const matching = new RegExp(pattern);
  const decimals = fc.oneof(
    fc.bigInt({ min: 1n, max: 9_223_372_036_854_775_807n }).map(String),
    fc.integer({ min: 1, max: 5000 }).map(String),
    fc.constantFrom("9223372036854775807", "9223372036854775808", "9999999999999999999", "0", "007", "-1", "1e3", "0x10", " 1", "1 ", "abc"),
  );
  // Mostly ids the pattern takes, so that reads and actions get past validation as often as not.
  return fc.oneof({ arbitrary: decimals.filter((text) => matching.test(text)), weight: 3 }, { arbitrary: decimals, weight: 1 });
}

/**
 * `?wait=` holds an enqueue open for up to a minute when the job does not end (no worker runs in
 * the fuzz): short waits, the edges past the limit and text that is no duration, never a long wait.
 */
const waitValue: fc.Arbitrary<string> = fc.oneof(
  // Mostly waits the route accepts, so that an enqueue with one still reaches its handler often.
  { arbitrary: fc.constantFrom("0", "0s", "1ms", "5ms", "20ms"), weight: 3 },
  { arbitrary: fc.constantFrom("61s", "60001ms", "9999999s", "-1", "1.5s", "2m", " 1s", ""), weight: 1 },
  { arbitrary: stringOf({ type: "string", maxLength: 16 }).filter((text) => !/^\d+(ms|s)?$/.test(text)), weight: 1 },
);

/** A value as it travels in a query string or path segment. */
function asText(value: unknown): string {
  return typeof value === "string" ? value : typeof value === "number" || typeof value === "boolean" ? String(value) : JSON.stringify(value) ?? "";
}

/** Percent-encoding that also writes lone surrogates (as the WTF-8 bytes no UTF-8 decoder accepts). */
export function percentEncode(text: string): string {
  let out = "";
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (code >= 0xd800 && code <= 0xdfff) {
      out += [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)].map((byte) => `%${byte.toString(16).toUpperCase()}`).join("");
    } else {
      out += encodeURIComponent(char);
    }
  }
  return out;
}

/** Bodies no schema describes: malformed, oversized, not UTF-8, not JSON. */
const RAW_BODIES: Array<{ payload: string | Buffer; contentType?: string }> = [
  { payload: "{", contentType: "application/json" },
  { payload: '{"taxonIds": [', contentType: "application/json" },
  { payload: "", contentType: "application/json" },
  { payload: "null", contentType: "application/json" },
  { payload: '{"hotMinObservations":1e400,"taxonIds":[1e400]}', contentType: "application/json" },
  { payload: '{"kingdom":"a\\ud800b","taxonIds":[1]}', contentType: "application/json" },
  { payload: '{"kingdom":"Plan\\u0000tae"}', contentType: "application/json" },
  { payload: '{"__proto__":{"polluted":true}}', contentType: "application/json" },
  { payload: '{"constructor":{"prototype":{"polluted":true}}}', contentType: "application/json" },
  { payload: Buffer.from([0x7b, 0x22, 0x6b, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), contentType: "application/json" },
  { payload: "[".repeat(20_000) + "]".repeat(20_000), contentType: "application/json" },
  { payload: JSON.stringify({ kingdom: "x".repeat(300_000) }), contentType: "application/json" },
  { payload: "taxonIds=1", contentType: "application/x-www-form-urlencoded" },
  { payload: "{}", contentType: "text/plain" },
  { payload: "{}", contentType: "application/json; charset=latin1" },
  { payload: "{}", contentType: "application/xml" },
  { payload: "{}" },
];

export interface FuzzOptions {
  /** The bearer token most requests carry. */
  token: string;
  /** Job ids that exist, so that reads and actions reach real jobs too. */
  knownIds: () => readonly string[];
}

/** One request of any documented operation. */
export function requestOf(document: OpenApiDocument, options: FuzzOptions): fc.Arbitrary<FuzzRequest> {
  const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({
      arbitrary: operationRequest(path, method.toUpperCase() as "GET" | "POST", operation, options),
      // Operations that take nothing but a query string (health, tasks, queues, metrics) have little to
      // vary: a third of the share of those with bodies, ids and filters.
      weight: (operation.parameters ?? []).length > 0 || operation.requestBody ? 3 : 1,
    })),
  );
  return fc.oneof(...operations);
}

function operationRequest(path: string, method: "GET" | "POST", operation: Operation, options: FuzzOptions): fc.Arbitrary<FuzzRequest> {
  const parameters = operation.parameters ?? [];
  const pathParameters = parameters.filter((parameter) => parameter.in === "path");
  const queryParameters = parameters.filter((parameter) => parameter.in === "query");
  const headerParameters = parameters.filter((parameter) => parameter.in === "header");

  const pathValues = fc.tuple(
    ...pathParameters.map((parameter) =>
      fc.oneof({ arbitrary: fc.nat().map((index) => pick(options.knownIds(), index) ?? "1"), weight: 3 }, { arbitrary: valueOf(parameter.schema).map(asText), weight: 2 }),
    ),
  );
  const query = fc.record(
    Object.fromEntries(queryParameters.map((parameter) => [parameter.name, parameter.name === "wait" ? waitValue : valueOf(parameter.schema).map(asText)])),
    { requiredKeys: [] },
  );
  const unknownQuery = fc.oneof({ arbitrary: fc.constant([] as Array<[string, string]>), weight: 9 }, { arbitrary: fc.tuple(fc.constantFrom("foo", "jobKey", "limit", "cursor", "__proto__"), anyText).map((pair) => [pair]), weight: 1 });
  const headers = fc.record(
    Object.fromEntries(headerParameters.map((parameter) => [parameter.name, fc.oneof(fc.stringMatching(/^[\x21-\x7e]{1,40}$/), fc.constantFrom("x".repeat(201), "re-run-42"))])),
    { requiredKeys: [] },
  );
  const credential = fc.oneof(
    { arbitrary: fc.constant({ authorization: `Bearer ${options.token}` }), weight: 12 },
    { arbitrary: fc.constant({}), weight: 1 },
    { arbitrary: fc.constantFrom({ authorization: "Bearer not-a-configured-token-0123" }, { authorization: "Basic dXNlcjpwYXNz" }, { authorization: "Bearer a.b.c" }), weight: 1 },
  );
  const crossSite = method === "POST" ? fc.oneof({ arbitrary: fc.constant({}), weight: 20 }, { arbitrary: fc.constant({ "sec-fetch-site": "cross-site" }), weight: 1 }) : fc.constant({});
  const body = bodyOf(method, operation);

  return fc.tuple(pathValues, query, unknownQuery, headers, credential, crossSite, body).map(([values, queryValues, extra, headerValues, auth, site, content]) => {
    let url = path;
    pathParameters.forEach((parameter, index) => (url = url.replace(`{${parameter.name}}`, percentEncode(values[index] as string))));
    const pairs = [...Object.entries(queryValues as Record<string, string>), ...extra];
    const search = pairs.map(([name, value]) => `${percentEncode(name)}=${percentEncode(value)}`).join("&");
    const request: FuzzRequest = {
      operation: `${method} ${path}`,
      method,
      url: search ? `${url}?${search}` : url,
      headers: { ...(headerValues as Record<string, string>), ...auth, ...site, ...(content?.contentType ? { "content-type": content.contentType } : {}) },
    };
    if (content) request.payload = content.payload;
    return request;
  });
}

function bodyOf(method: "GET" | "POST", operation: Operation): fc.Arbitrary<{ payload: string | Buffer; contentType?: string } | null> {
  if (method !== "POST") return fc.constant(null);
  const schema = operation.requestBody?.content["application/json"]?.schema;
  const generated = schema ? valueOf(schema).map((value) => ({ payload: JSON.stringify(value) ?? "null", contentType: "application/json" })) : fc.constant({ payload: "{}", contentType: "application/json" });
  return fc.oneof(
    { arbitrary: generated, weight: 10 },
    { arbitrary: fc.constant(null), weight: 1 },
    { arbitrary: fc.constantFrom(...RAW_BODIES), weight: 2 },
  );
}

function pick<T>(items: readonly T[], index: number): T | undefined {
  return items.length === 0 ? undefined : items[index % items.length];
}

export interface Answer {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

/**
 * What is wrong with an answer to a request of this operation, measured against the document:
 * a 5xx, an undocumented status, a documented header outside its schema, another media type than
 * documented, a body outside the schema; and the headers every answer carries (nosniff, no-store).
 * Null when nothing is.
 */
export function makeAnswerChecker(document: OpenApiDocument): (operation: string, answer: Answer) => string | null {
  const ajv = new Ajv({ strict: false, allErrors: false, validateFormats: true });
  addFormats.default(ajv);
  const validators = new Map<string, ValidateFunction>();
  const validatorFor = (key: string, schema: Schema) => {
    let validate = validators.get(key);
    if (!validate) {
      validate = ajv.compile(schema);
      validators.set(key, validate);
    }
    return validate;
  };
  return (operationKey, answer) => {
    const [method, path] = operationKey.split(" ") as [string, string];
    const operation = document.paths[path]![method.toLowerCase()]!;
    if (answer.statusCode >= 500) return `answered ${answer.statusCode}: ${answer.body.slice(0, 300)}`;
    const documented = operation.responses[String(answer.statusCode)];
    if (!documented) return `answered ${answer.statusCode}, which the document does not list (${Object.keys(operation.responses).join(", ")}): ${answer.body.slice(0, 300)}`;
    if (answer.headers["x-content-type-options"] !== "nosniff" || answer.headers["cache-control"] !== "no-store") {
      return `answered ${answer.statusCode} without nosniff and no-store (x-content-type-options: ${String(answer.headers["x-content-type-options"])}, cache-control: ${String(answer.headers["cache-control"])})`;
    }
    // Headers the document describes for this answer, where sent, as it describes them (header values are text).
    for (const [name, header] of Object.entries(documented.headers ?? {})) {
      const value = answer.headers[name];
      if (value === undefined) continue;
      const text = String(value);
      const typed = header.schema.type === "integer" ? (/^-?\d+$/.test(text) ? Number(text) : text) : text;
      const validate = validatorFor(`${operationKey} ${answer.statusCode} header ${name}`, header.schema);
      if (!validate(typed)) return `answered ${answer.statusCode} with a ${name} header outside the document: ${text}`;
    }
    if (!documented.content) return null;
    const contentType = String(answer.headers["content-type"] ?? "");
    const media = documented.content[contentType];
    if (!media) return `answered ${answer.statusCode} as '${contentType}', documented as ${Object.keys(documented.content).join(", ")}`;
    if (!contentType.startsWith("application/json")) return null;
    let body: unknown;
    try {
      body = JSON.parse(answer.body);
    } catch {
      return `answered ${answer.statusCode} with a body that is not JSON: ${answer.body.slice(0, 200)}`;
    }
    const validate = validatorFor(`${operationKey} ${answer.statusCode}`, media.schema);
    if (!validate(body)) return `answered ${answer.statusCode} with a body outside the document: ${ajv.errorsText(validate.errors)}: ${answer.body.slice(0, 300)}`;
    return null;
  };
}
