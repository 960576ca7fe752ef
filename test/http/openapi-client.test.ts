/**
 * The API as a generated client sees it: openapi-typescript turns GET /openapi.json into types,
 * openapi-fetch is the client over them, and tsc checks a call to every operation (generated from
 * the document, so a new route is covered without editing this file) plus calls a client must get
 * right or wrong (`@ts-expect-error` fails the check when the types turn too loose to refuse them).
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import openapiTS, { astToString, type OpenAPI3 } from "openapi-typescript";
import { expect } from "vitest";
import type { App } from "../../src/http/app.ts";
import { AUTH, buildTestApp } from "../helpers/app.ts";
import { test } from "../helpers/env.ts";
import { PROJECT_ROOT } from "../helpers/service-process.ts";

interface Parameter {
  name: string;
  in: "path" | "query" | "header";
  required?: boolean;
  schema: { type?: string; enum?: unknown[]; minimum?: number; format?: string };
}
interface Operation {
  operationId?: string;
  parameters?: Parameter[];
  requestBody?: unknown;
  responses: Record<string, { headers?: Record<string, unknown>; content?: Record<string, unknown> }>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { properties: Record<string, unknown>; required?: string[] }> };
}

let app: App;
let document: Document;

test.beforeAll(async ({ env }) => {
  app = await buildTestApp(env);
  document = (await app.inject({ method: "GET", url: "/openapi.json", headers: AUTH })).json();
});
test.afterAll(async () => {
  await app.close();
});

function operations(): Array<{ method: string; path: string; operation: Operation }> {
  return Object.entries(document.paths).flatMap(([route, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ method, path: route, operation })),
  );
}

test("every operation has an operationId, unique and usable as an identifier", () => {
  const ids = operations().map(({ method, path: route, operation }) => operation.operationId ?? `${method} ${route} has none`);
  expect(ids.length).toBeGreaterThan(10);
  for (const id of ids) expect(id).toMatch(/^[a-z][A-Za-z0-9]*$/);
  expect(new Set(ids).size).toBe(ids.length);
  expect(ids).toEqual(expect.arrayContaining(["enqueueResolveTaxa", "enqueueResolveTaxaBatch", "getJob", "listJobs", "retryJob", "getHealth", "getReadiness"]));
});

test("the 202 of an enqueue documents its Location header, and errors document Fastify's code", () => {
  const enqueue = document.paths["/jobs/resolve_taxa"]!.post!;
  expect(enqueue.responses["202"]!.headers).toMatchObject({ location: { schema: { type: "string" }, description: expect.stringMatching(/URL/) } });
  const errorSchema = document.components.schemas.ErrorResponse!;
  expect(errorSchema.properties.code).toMatchObject({ type: "string" });
  expect(errorSchema.required).not.toContain("code");
});

test("the answers carry what the document promises: Location on a 202, Fastify's code on its errors", async () => {
  const enqueued = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: AUTH, payload: { taxonIds: [42] } });
  expect(enqueued.statusCode).toBe(202);
  expect(enqueued.headers.location).toBe(enqueued.json().links.self);

  const invalid = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: AUTH, payload: { taxonIds: "42" } });
  expect(invalid.statusCode).toBe(400);
  expect(invalid.json()).toMatchObject({ statusCode: 400, code: "FST_ERR_VALIDATION", error: "Bad Request", message: expect.stringMatching(/taxonIds/) });

  const notJson = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: { ...AUTH, "content-type": "text/plain" }, payload: "x" });
  expect(notJson.statusCode).toBe(415);
  expect(notJson.json()).toMatchObject({ code: "FST_ERR_CTP_INVALID_MEDIA_TYPE" });
});

/** A value of the parameter's type, for the required parameters of a generated call. */
function sampleValue(parameter: Parameter): string {
  const { schema } = parameter;
  if (schema.enum) return JSON.stringify(schema.enum[0]);
  if (schema.type === "integer" || schema.type === "number") return String(schema.minimum ?? 1);
  if (schema.type === "boolean") return "true";
  return JSON.stringify(schema.format === "date-time" ? "2030-01-01T00:00:00Z" : "1");
}

/** One call per operation through openapi-fetch, its answer assigned to the operation's own 2xx type. */
function generatedCalls(): string {
  const calls = operations().map(({ method, path: route, operation }) => {
    const id = operation.operationId!;
    const params: Record<string, string[]> = {};
    for (const parameter of operation.parameters ?? []) {
      if (parameter.required) (params[parameter.in] ??= []).push(`${JSON.stringify(parameter.name)}: ${sampleValue(parameter)}`);
    }
    const init = [
      Object.keys(params).length > 0
        ? `params: { ${Object.entries(params).map(([place, values]) => `${place}: { ${values.join(", ")} }`).join(", ")} }`
        : "",
      operation.requestBody ? `body: bodyOf<"${id}">()` : "",
    ].filter(Boolean);
    // Every success answer it documents (an enqueue answers 202, or 200 when ?wait= saw the job end).
    const successes = Object.keys(operation.responses).filter((status) => status.startsWith("2"));
    // The media type the document names for it: JSON, or Prometheus text for GET /metrics.
    const mediaType = Object.keys(operation.responses[successes[0]!]!.content ?? { "application/json": null })[0]!;
    const answerType = successes.map((status) => `operations["${id}"]["responses"][${status}]["content"][${JSON.stringify(mediaType)}]`).join(" | ");
    return [
      `export async function ${id}() {`,
      `  const { data } = await client.${method.toUpperCase()}(${JSON.stringify(route)}${init.length ? `, { ${init.join(", ")} }` : ""});`,
      `  const answer: ${answerType} | undefined = data;`,
      `  return answer;`,
      `}`,
    ].join("\n");
  });
  return [
    `import createClient from "openapi-fetch";`,
    `import type { components, operations, paths } from "./api.ts";`,
    ``,
    `const client = createClient<paths>({ baseUrl: "http://localhost:8080", headers: { authorization: "Bearer token" } });`,
    `declare function bodyOf<Id extends keyof operations>(): NonNullable<operations[Id]["requestBody"]>["content"]["application/json"];`,
    ``,
    ...calls,
    ``,
    HAND_WRITTEN_CALLS,
  ].join("\n");
}

/** What a caller writes by hand: right calls compile, wrong ones do not. */
const HAND_WRITTEN_CALLS = `
export async function byHand() {
  const enqueued = await client.POST("/jobs/resolve_taxa", {
    params: { query: { priority: 10, runAt: "2030-01-01T23:00:00Z" }, header: { "idempotency-key": "re-resolve-42" } },
    body: { taxonIds: [42], force: true },
  });
  const jobId: string | undefined = enqueued.data?.jobId;
  const location: string | undefined = null as unknown as operations["enqueueResolveTaxa"]["responses"][202]["headers"]["location"];
  const code: string | undefined = enqueued.error?.code;
  const job = await client.GET("/jobs/{id}", { params: { path: { id: jobId ?? "1" } } });
  const state: components["schemas"]["ErrorResponse"]["state"] | undefined = job.data?.state;

  // @ts-expect-error taxonIds is a list of integers
  await client.POST("/jobs/resolve_taxa", { body: { taxonIds: "42" } });
  // @ts-expect-error no such route
  await client.POST("/jobs/resolve_taxon", { body: {} });
  // @ts-expect-error a job id is a path parameter
  await client.GET("/jobs/{id}", {});
  // @ts-expect-error the 202 answer has no such field (only the 200 of a ?wait= does)
  enqueued.data?.id;
  const waited = await client.POST("/jobs/resolve_taxa", { params: { query: { wait: "30s" } }, body: { taxonIds: [42] } });
  const waitedState: components["schemas"]["ErrorResponse"]["state"] | undefined = waited.data?.state;
  const result: unknown = waited.data && "result" in waited.data ? waited.data.result : undefined;
  return { location, code, state, waitedState, result };
}
`;

test("a client generated with openapi-typescript type-checks a call to every operation", { timeout: 120_000 }, async () => {
  // Inside the repository, so the generated files resolve openapi-fetch and typescript from node_modules.
  const directory = await mkdtemp(path.join(PROJECT_ROOT, ".openapi-client-"));
  try {
    await writeFile(path.join(directory, "api.ts"), astToString(await openapiTS(document as unknown as OpenAPI3)));
    await writeFile(path.join(directory, "calls.ts"), generatedCalls());
    await writeFile(path.join(directory, "tsconfig.json"), JSON.stringify({ extends: "../tsconfig.json", include: ["api.ts", "calls.ts"] }));
    const tsc = path.join(PROJECT_ROOT, "node_modules", "typescript", "bin", "tsc");
    const result = await promisify(execFile)(process.execPath, [tsc, "--noEmit", "-p", path.join(directory, "tsconfig.json")]).then(
      () => ({ ok: true, output: "" }),
      (error: { stdout: string; stderr: string }) => ({ ok: false, output: error.stdout + error.stderr }),
    );
    expect(result.output).toBe("");
    expect(result.ok).toBe(true);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});
