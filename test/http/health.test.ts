import { sql } from "kysely";
import { expect } from "vitest";
import { makeDatabase } from "../../src/db/database.ts";
import { EXPECTED_SCHEMA_VERSION } from "../../src/db/migrate.ts";
import type { App } from "../../src/http/app.ts";
import { AUTH, buildTestApp } from "../helpers/app.ts";
import { test } from "../helpers/env.ts";
import { freePort } from "../helpers/service-process.ts";

let running = true;
let app: App;

test.beforeAll(async ({ env }) => {
  app = await buildTestApp(env, { worker: { isRunning: () => running } });
});
test.afterAll(async () => {
  await app.close();
});

// Cloud Run answers some paths ending in z itself, so /health and /ready are the ones that work
// through the service URL; the z forms stay for probes already pointed at them.
test.for(["/health", "/healthz"])("liveness on %s answers without touching anything", async (url) => {
  const response = await app.inject({ method: "GET", url });
  expect(response.statusCode).toBe(200);
  expect(response.json()).toEqual({ status: "ok" });
});

test.for(["/ready", "/readyz"])("readiness on %s is 200 when database, runner and schema are good", async (url) => {
  running = true;
  const response = await app.inject({ method: "GET", url });
  expect(response.statusCode).toBe(200);
  expect(response.json()).toEqual({
    status: "ready",
    checks: { database: { ok: true }, worker: { ok: true }, schema: { ok: true } },
    overdueSchedules: [],
    paused: [],
  });
});

test.for(["/ready", "/readyz"])("readiness on %s is 503 when the runner has stopped", async (url) => {
  running = false;
  const response = await app.inject({ method: "GET", url });
  running = true;
  expect(response.statusCode).toBe(503);
  expect(response.json()).toMatchObject({ status: "not_ready", checks: { worker: { ok: false, detail: "job runner is not running" } } });
});

test("the OpenAPI document shows /health and /ready, open to everyone, and not the z aliases", async () => {
  const document = (await app.inject({ method: "GET", url: "/openapi.json", headers: AUTH })).json();
  expect(document.paths["/health"].get).toMatchObject({ operationId: "getHealth", security: [] });
  expect(document.paths["/ready"].get).toMatchObject({ operationId: "getReadiness", security: [] });
  // 400: an unknown query parameter, refused by every operation.
  expect(Object.keys(document.paths["/ready"].get.responses).sort()).toEqual(["200", "400", "503"]);
  expect(document.paths["/healthz"]).toBeUndefined();
  expect(document.paths["/readyz"]).toBeUndefined();
});

test("readiness is 503 when the schema is behind this build", async ({ env }) => {
  await sql`delete from observing_jobs.kysely_migration where name = ${EXPECTED_SCHEMA_VERSION}`.execute(env.db);
  try {
    const response = await app.inject({ method: "GET", url: "/ready" });
    expect(response.statusCode).toBe(503);
    expect(response.json().checks.schema).toMatchObject({ ok: false, detail: expect.stringMatching(/run `observing-jobs migrate` first/) });
  } finally {
    await sql`insert into observing_jobs.kysely_migration (name, timestamp) values (${EXPECTED_SCHEMA_VERSION}, now()::text)`.execute(env.db);
  }
});

test("readiness is 503 when the database does not answer", async ({ env }) => {
  const unreachable = makeDatabase(`postgres://postgres@127.0.0.1:${await freePort()}/none`, { maxConnections: 1, logger: env.logger });
  const broken = await buildTestApp({ ...env, pool: unreachable.pool, db: unreachable.db });
  try {
    const response = await broken.inject({ method: "GET", url: "/ready" });
    expect(response.statusCode).toBe(503);
    expect(response.json().checks.database).toMatchObject({ ok: false });
    expect(JSON.stringify(response.json())).not.toMatch(/postgres:\/\//);
  } finally {
    await broken.close();
    await unreachable.close();
  }
});
