import { Validator } from "@seriousme/openapi-schema-validator";
import { describe, expect } from "vitest";
import { InvalidPayloadError } from "../../src/enqueue.ts";
import { IllegalTransitionError, JobNotFoundError } from "../../src/lifecycle/jobs.ts";
import { UnknownTaskError } from "../../src/registry.ts";
import { makeDatabase } from "../../src/db/database.ts";
import { API_TOKEN, AUTH, buildTestApp, testAppForFile } from "../helpers/app.ts";
import { expectEnqueued, expectEnqueuedMany } from "../helpers/enqueued.ts";
import { findTaxon, insertTaxa, listJobs, resetData, runDueJobs, test } from "../helpers/env.ts";
import { freePort } from "../helpers/service-process.ts";

const app = testAppForFile();
test.beforeEach(async ({ env }) => {
  await resetData(env);
});

const post = (url: string, payload?: unknown, headers: Record<string, string> = {}) =>
  app().inject({ method: "POST", url, headers: { ...AUTH, ...headers }, ...(payload === undefined ? {} : { payload: payload as object }) });
const get = (url: string) => app().inject({ method: "GET", url, headers: AUTH });

describe("POST /jobs/:task", () => {
  test("enqueues the payload and answers 202 with the job, its state and a link", async ({ env }) => {
    const response = await post("/jobs/resolve_taxa", { taxonIds: [42] });
    expect(response.statusCode).toBe(202);
    const body = response.json();
    expect(body).toMatchObject({ task: "resolve_taxa", state: "queued", queue: null, links: { self: `/jobs/${body.jobId}` } });
    expect(response.headers.location).toBe(`/jobs/${body.jobId}`);
    const job = await expectEnqueued(env.db, "resolve_taxa", { payload: { taxonIds: [42], force: false, limit: 100 }, maxAttempts: 8 });
    expect(job.id).toBe(body.jobId);
    expect(await listJobs(env.db)).toHaveLength(1);

    const details = (await get(body.links.self)).json();
    expect(details.timeline[0]).toMatchObject({ event: "enqueued", source: "http", actor: expect.stringMatching(/^token:[0-9a-f]{8}$/) });
    // The request's log line says who acted.
    const line = env.logs.find((entry) => entry.message === "request completed" && (entry.httpRequest as { requestUrl?: string })?.requestUrl === "/jobs/resolve_taxa");
    expect(line).toMatchObject({ caller: details.timeline[0].actor, jobId: body.jobId, task: "resolve_taxa", httpRequest: { requestMethod: "POST", status: 202 } });
    // One line per request: the request's own says what it enqueued.
    expect(env.logs.filter((entry) => entry.jobId === body.jobId)).toHaveLength(1);
    expect(JSON.stringify(details)).not.toContain(API_TOKEN);
  });

  test("takes run at, priority, attempts, job key and queue from the query", async () => {
    const runAt = new Date(Date.now() + 3_600_000).toISOString();
    const response = await post(`/jobs/resolve_taxa?runAt=${encodeURIComponent(runAt)}&priority=-5&maxAttempts=2&jobKey=nightly-extra&queue=gbif-serial`, {
      force: true,
    });
    expect(response.statusCode).toBe(202);
    expect(response.json()).toMatchObject({ state: "scheduled", queue: "gbif-serial", runAt });
    const details = (await get(`/jobs/${response.json().jobId}`)).json();
    expect(details).toMatchObject({ priority: -5, maxAttempts: 2, jobKey: "nightly-extra", state: "scheduled" });
  });

  test("a request without a body enqueues the task's defaults", async () => {
    const response = await app().inject({ method: "POST", url: "/jobs/resolve_taxa", headers: AUTH });
    expect(response.statusCode).toBe(202);
    expect((await get(`/jobs/${response.json().jobId}`)).json().payload).toEqual({ force: false, limit: 100 });
  });

  const refusals: Array<[string, () => Promise<{ statusCode: number; json(): { message: string } }>, number, RegExp]> = [
    ["an unknown task, with a did-you-mean", () => post("/jobs/resolve_taxon", {}), 404, /unknown task 'resolve_taxon' \(did you mean 'resolve_taxa'\?\)/],
    ["an unknown batch task", () => post("/jobs/frobnicate/batch", { payloads: [{}] }), 404, /unknown task 'frobnicate'/],
    ["an internal task", () => post("/jobs/prune_job_history", {}), 403, /internal/],
    [
      "a payload that fails the schema, naming each bad field",
      () => post("/jobs/resolve_taxa", { taxonIds: ["42"], limit: 0, extra: true }),
      400,
      /payload has unknown property 'extra'.*payload\/taxonIds\/0 must be integer.*payload\/limit must be >= 1|payload\/taxonIds\/0 must be integer/,
    ],
    ["a payload that is not an object", () => post("/jobs/resolve_taxa", [1, 2]), 400, /payload must be object/],
    ["bad options", () => post("/jobs/resolve_taxa?priority=high", {}), 400, /querystring\/priority must be integer/],
    ["an unknown option", () => post("/jobs/resolve_taxa?colour=red", {}), 400, /querystring has unknown property 'colour'/],
    ["a body over the limit", () => post("/jobs/resolve_taxa", { kingdom: "x".repeat(300_000) }), 413, /too large/i],
    ["a wrong content type", () => post("/jobs/resolve_taxa", "taxonIds=42", { "content-type": "application/x-www-form-urlencoded" }), 415, /Unsupported Media Type/],
    ["malformed JSON", () => post("/jobs/resolve_taxa", '{"taxonIds": [', { "content-type": "application/json" }), 400, /JSON/],
    ["both an Idempotency-Key and a jobKey", () => post("/jobs/resolve_taxa?jobKey=k", {}, { "idempotency-key": "abc" }), 400, /either an Idempotency-Key header or a jobKey/],
  ];
  for (const [label, send, status, message] of refusals) {
    test(`refuses ${label} with ${status} and enqueues nothing`, async ({ env }) => {
      const response = await send();
      expect(response.statusCode).toBe(status);
      expect(response.json().message).toMatch(message);
      expect(await listJobs(env.db)).toHaveLength(0);
      expect(await env.db.selectFrom("observing_jobs.job_records").select("id").execute()).toHaveLength(0);
    });
  }

  test("a duplicate Idempotency-Key yields one job, also after that job finished", async ({ env }) => {
    const [taxon] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    const first = await post("/jobs/resolve_taxa", { taxonIds: [taxon] }, { "idempotency-key": "re-resolve-42-2026-11-25" });
    const second = await post("/jobs/resolve_taxa", { taxonIds: [taxon] }, { "idempotency-key": "re-resolve-42-2026-11-25" });
    expect(first.statusCode).toBe(202);
    expect(second.statusCode).toBe(202);
    expect(second.json().jobId).toBe(first.json().jobId);
    expect(second.headers["idempotent-replayed"]).toBe("true");
    expect(await listJobs(env.db)).toHaveLength(1);

    await runDueJobs(env);
    const third = await post("/jobs/resolve_taxa", { taxonIds: [taxon] }, { "idempotency-key": "re-resolve-42-2026-11-25" });
    expect(third.json()).toMatchObject({ jobId: first.json().jobId, state: "succeeded" });
    expect(await listJobs(env.db)).toHaveLength(0);
    const other = await post("/jobs/resolve_taxa", { taxonIds: [taxon] }, { "idempotency-key": "another-request" });
    expect(other.json().jobId).not.toBe(first.json().jobId);
  });
});

describe("POST /jobs/:task/batch", () => {
  test("validates every payload first and enqueues all or nothing", async ({ env }) => {
    const bad = await post("/jobs/resolve_taxa/batch", { payloads: [{ taxonIds: [1] }, { taxonIds: "2" }, { taxonIds: [3] }] });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toMatch(/body\/payloads\/1\/taxonIds must be array/);
    expect(await listJobs(env.db)).toHaveLength(0);

    const good = await post("/jobs/resolve_taxa/batch?priority=3", { payloads: [{ taxonIds: [1] }, { taxonIds: [2] }, { taxonIds: [3] }] });
    expect(good.statusCode).toBe(202);
    expect(good.json().jobs).toHaveLength(3);
    const listed = (await get("/jobs?task=resolve_taxa")).json().jobs as Array<{ priority: number }>;
    expect(listed.map((job) => job.priority)).toEqual([3, 3, 3]);
    expect(await listJobs(env.db)).toHaveLength(3);
    const line = env.logs.find((entry) => entry.message === "request completed" && (entry.httpRequest as { requestUrl?: string })?.requestUrl === "/jobs/resolve_taxa/batch?priority=3");
    expect(line).toMatchObject({ task: "resolve_taxa", enqueued: 3, httpRequest: { status: 202 } });
  });

  test("refuses an empty or oversized batch", async () => {
    expect((await post("/jobs/resolve_taxa/batch", { payloads: [] })).statusCode).toBe(400);
    const many = { payloads: Array.from({ length: 1001 }, () => ({})) };
    expect((await post("/jobs/resolve_taxa/batch", many)).json().message).toMatch(/body\/payloads must NOT have more than 1000 items/);
  });
});

describe("job keys are a function of the whole work", () => {
  const resolving = (taxonIds: number[]) => ({ payload: expect.objectContaining({ taxonIds }) });

  test("the job-key collision: two different taxonIds sets with the same first id, last id and count are two jobs", async ({ env }) => {
    const first = (await post("/jobs/resolve_taxa", { taxonIds: [1, 2, 3] })).json();
    const second = (await post("/jobs/resolve_taxa", { taxonIds: [1, 99, 3] })).json();
    expect(second.jobId).not.toBe(first.jobId);
    await expectEnqueuedMany(env.db, "resolve_taxa", [resolving([1, 2, 3]), resolving([1, 99, 3])]);
    // The same rows again, in another order and with a repeat, are the same work: the pending job is replaced.
    const again = (await post("/jobs/resolve_taxa", { taxonIds: [3, 1, 2, 2] })).json();
    expect(again.jobId).toBe(first.jobId);
    await expectEnqueuedMany(env.db, "resolve_taxa", [resolving([3, 1, 2, 2]), resolving([1, 99, 3])]);
  });

  test("the same rows with other work (force, kingdom) are other jobs", async ({ env }) => {
    const payloads = [{ taxonIds: [5] }, { taxonIds: [5], force: true }, { taxonIds: [5], kingdom: "Plantae" }];
    for (const payload of payloads) await post("/jobs/resolve_taxa", payload);
    await expectEnqueuedMany(env.db, "resolve_taxa", payloads.map((payload) => ({ payload: expect.objectContaining(payload) })));
  });

  test("a batch with two payloads mapping to the same job key: the last payload wins, as one by one, never a 500", async ({ env }) => {
    const rows = await post("/jobs/resolve_taxa/batch", { payloads: [{ taxonIds: [7, 8] }, { taxonIds: [1] }, { taxonIds: [8, 7, 7] }] });
    expect(rows.statusCode).toBe(202);
    expect(rows.json().jobs).toHaveLength(2);
    // A key's job is added where its last payload stands in the batch.
    await expectEnqueuedMany(env.db, "resolve_taxa", [resolving([1]), resolving([8, 7, 7])]);

    const kingdoms = await post("/jobs/backfill_kingdom/batch", { payloads: [{ kingdom: "Plantae", batchSize: 10 }, { kingdom: "plantae", batchSize: 20 }] });
    expect(kingdoms.statusCode).toBe(202);
    expect(kingdoms.json().jobs).toHaveLength(1);
    await expectEnqueued(env.db, "backfill_kingdom", { payload: { kingdom: "plantae", batchSize: 20, force: true } });

    // One by one gives the same job: it replaces the pending one.
    const single = await post("/jobs/backfill_kingdom", { kingdom: "PLANTAE" });
    expect(single.json().jobId).toBe(kingdoms.json().jobs[0].jobId);
    await expectEnqueued(env.db, "backfill_kingdom", { payload: { kingdom: "PLANTAE", batchSize: 100, force: true } });
  });
});

describe("GET /jobs and GET /jobs/:id", () => {
  test("a succeeded job's state and history, after graphile-worker deleted it", async ({ env }) => {
    const [taxon] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    const { jobId } = (await post("/jobs/resolve_taxa", { taxonIds: [taxon] })).json();
    await runDueJobs(env);
    expect((await findTaxon(env.db, taxon!)).status).toBe("resolved");
    const response = await get(`/jobs/${jobId}`);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({
      id: jobId,
      state: "succeeded",
      attempts: 1,
      payload: { taxonIds: [taxon] },
      timeline: [{ event: "enqueued" }, { event: "started", attempt: 1 }, { event: "succeeded", attempt: 1 }],
    });
  });

  test("404 for an unknown job, 400 for an id that is not one", async () => {
    const missing = await get("/jobs/424242");
    expect(missing.statusCode).toBe(404);
    expect(missing.body).toBe('{"statusCode":404,"error":"Not Found","message":"no job with id 424242"}');
    const bad = await get("/jobs/abc");
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toBe("params/id must be a job id (a whole number from 1 to 9223372036854775807)");
  });

  test("lists newest first with filters and cursor pagination", async () => {
    for (const id of [1, 2, 3]) await post("/jobs/resolve_taxa", { taxonIds: [id] });
    await post("/jobs/refresh_thumbnails", {});
    const page = (await get("/jobs?task=resolve_taxa&limit=2")).json();
    expect(page.jobs.map((job: { task: string }) => job.task)).toEqual(["resolve_taxa", "resolve_taxa"]);
    expect(page.nextCursor).toBe(page.jobs[1].id);
    const rest = (await get(`/jobs?task=resolve_taxa&limit=2&cursor=${page.nextCursor}`)).json();
    expect(rest.jobs).toHaveLength(1);
    expect(rest.nextCursor).toBeNull();
    expect((await get("/jobs?queue=wikidata")).json().jobs.map((job: { task: string }) => job.task)).toEqual(["refresh_thumbnails"]);
    expect((await get("/jobs?state=queued")).json().jobs).toHaveLength(4);
    expect((await get(`/jobs?from=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).json().jobs).toHaveLength(0);
    expect((await get("/jobs?state=sleeping")).statusCode).toBe(400);
    expect((await get("/jobs?limit=500")).json().message).toMatch(/querystring\/limit must be <= 200/);
  });
});

describe("operator actions over HTTP", () => {
  test("cancel, retry and discard, recorded with the caller; illegal transitions are 409 with the state", async ({ env }) => {
    const { jobId } = (await post(`/jobs/resolve_taxa?runAt=${encodeURIComponent(new Date(Date.now() + 600_000).toISOString())}`, { force: true })).json();
    const retryTooEarly = await post(`/jobs/${jobId}/retry`);
    expect(retryTooEarly.statusCode).toBe(409);
    expect(retryTooEarly.json()).toMatchObject({ state: "scheduled", message: expect.stringMatching(/cannot retry job \d+: it is scheduled/) });
    expect(retryTooEarly.body).toMatch(/^\{"statusCode":409,"error":"Conflict","message":"cannot retry job \d+: it is scheduled \([^"]+\)","state":"scheduled"\}$/);

    const cancelled = await post(`/jobs/${jobId}/cancel`);
    expect(cancelled.statusCode).toBe(200);
    expect(cancelled.json()).toMatchObject({ state: "cancelled" });
    expect(cancelled.json().timeline.at(-1)).toMatchObject({ event: "cancelled", actor: expect.stringMatching(/^token:/) });
    expect((await post(`/jobs/${jobId}/cancel`)).statusCode).toBe(409);
    const missing = await post("/jobs/999999/discard");
    expect(missing.statusCode).toBe(404);
    expect(missing.body).toBe('{"statusCode":404,"error":"Not Found","message":"no job with id 999999"}');

    const [taxon] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    env.gbif.script("Puma concolor", { status: 503, body: {} });
    const dead = (await post("/jobs/resolve_taxa?maxAttempts=1", { taxonIds: [taxon] })).json().jobId;
    await runDueJobs(env);
    expect((await get(`/jobs/${dead}`)).json().state).toBe("dead");
    const retried = await post(`/jobs/${dead}/retry`);
    expect(retried.json()).toMatchObject({ state: "queued", attempts: 0 });
    await runDueJobs(env);
    expect((await get(`/jobs/${dead}`)).json().state).toBe("succeeded");
  });
});

describe("GET /tasks and GET /queues", () => {
  test("the registry with payload schemas, defaults and schedules with next fire times", async () => {
    const response = await get("/tasks");
    expect(response.statusCode).toBe(200);
    const tasks = response.json().tasks as Array<{ name: string; schedules: Array<{ id: string; nextRunAt: string }> }>;
    const resolve = tasks.find((task) => task.name === "resolve_taxa")!;
    expect(resolve).toMatchObject({
      internal: false,
      payloadSchema: { type: "object", properties: { taxonIds: { type: "array" } } },
      defaults: { maxAttempts: 8, concurrency: { limit: 2, group: "gbif" } },
      schedules: [{ id: "resolve_taxa_nightly", expression: "30 3 * * *", backfillSeconds: 86_400 }],
    });
    const next = new Date(resolve.schedules[0]!.nextRunAt);
    expect(next.getTime()).toBeGreaterThan(Date.now());
    expect([next.getUTCHours(), next.getUTCMinutes()]).toEqual([3, 30]);
    expect(tasks.find((task) => task.name === "prune_job_history")).toMatchObject({ internal: true });
  });

  test("queue depth per task and queue, and the age of the oldest ready job", async () => {
    await post("/jobs/resolve_taxa", { taxonIds: [1] });
    await post("/jobs/resolve_taxa", { taxonIds: [2] });
    await post(`/jobs/resolve_taxa?runAt=${encodeURIComponent(new Date(Date.now() + 600_000).toISOString())}`, { taxonIds: [3] });
    await post("/jobs/refresh_thumbnails", {});
    const { queues } = (await get("/queues")).json();
    expect(queues).toEqual([
      { task: "refresh_thumbnails", queue: "wikidata", ready: 1, scheduled: 0, running: 0, retryWait: 0, dead: 0, oldestReadyAgeSeconds: expect.any(Number), paused: null },
      { task: "resolve_taxa", queue: null, ready: 2, scheduled: 1, running: 0, retryWait: 0, dead: 0, oldestReadyAgeSeconds: expect.any(Number), paused: null },
    ]);
  });
});

describe("the OpenAPI document", () => {
  test("is generated from the route schemas and valid OpenAPI 3", async () => {
    const response = await get("/openapi.json");
    expect(response.statusCode).toBe(200);
    const document = response.json();
    const result = await new Validator().validate(document);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining(["/jobs/resolve_taxa", "/jobs/resolve_taxa/batch", "/jobs", "/jobs/{id}", "/jobs/{id}/retry", "/tasks", "/queues", "/health"]),
    );
    expect(document.paths["/jobs/resolve_taxa"].post.requestBody.content["application/json"].schema.properties.taxonIds.type).toBe("array");
    expect(document.paths["/jobs/prune_job_history"]).toBeUndefined();
  });
});

describe("errors", () => {
  test("an unknown or internal task's refusal keeps its exact body", async () => {
    expect((await post("/jobs/resolve_taxon", {})).body).toBe(`{"statusCode":404,"error":"Not Found","message":"unknown task 'resolve_taxon' (did you mean 'resolve_taxa'?)"}`);
    expect((await post("/jobs/prune_job_history/batch", { payloads: [{}] })).body).toBe(
      `{"statusCode":403,"error":"Forbidden","message":"task 'prune_job_history' is internal: it runs from the crontab only"}`,
    );
  });

  test("a failure inside is a 500 that says nothing of the internals", async ({ env }) => {
    const broken = makeDatabase(`postgres://postgres:hunter2@127.0.0.1:${await freePort()}/nowhere`, { maxConnections: 1, logger: env.logger });
    const brokenApp = await buildTestApp({ ...env, db: broken.db, pool: broken.pool });
    try {
      const response = await brokenApp.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: AUTH, payload: {} });
      expect(response.statusCode).toBe(500);
      expect(response.json()).toEqual({ statusCode: 500, error: "Internal Server Error", message: "internal error" });
      expect(response.body).not.toMatch(/hunter2|ECONNREFUSED|at .*\.ts/);
    } finally {
      await brokenApp.close();
      await broken.close();
    }
  });

  test("lifecycle and enqueue errors map to their status in the app's one error handler, never a 500", async ({ env }) => {
    const probe = await buildTestApp(env);
    const thrown: Record<string, Error> = {
      "invalid-payload": new InvalidPayloadError("resolve_taxa", ["payload/limit must be >= 1"]),
      "unknown-task": new UnknownTaskError("resolve_taxon", "resolve_taxa"),
      "no-job": new JobNotFoundError("7"),
      "illegal-transition": new IllegalTransitionError("retry", "7", "scheduled", ["dead", "retry_wait"]),
    };
    probe.get("/throw/:kind", async (request) => {
      throw thrown[(request.params as { kind: string }).kind];
    });
    const bodies = await Promise.all(Object.keys(thrown).map(async (kind) => (await probe.inject({ method: "GET", url: `/throw/${kind}` })).json())).finally(
      () => probe.close(),
    );
    expect(bodies).toEqual([
      { statusCode: 400, error: "Bad Request", message: "invalid payload for task 'resolve_taxa': payload/limit must be >= 1" },
      { statusCode: 404, error: "Not Found", message: "unknown task 'resolve_taxon' (did you mean 'resolve_taxa'?)" },
      { statusCode: 404, error: "Not Found", message: "no job with id 7" },
      { statusCode: 409, error: "Conflict", message: "cannot retry job 7: it is scheduled (retry applies to dead, retry_wait jobs)", state: "scheduled" },
    ]);
  });
});

test("the API works through a real listening port", async ({ env }) => {
  const served = await buildTestApp(env);
  try {
    const address = await served.listen({ host: "127.0.0.1", port: 0 });
    const enqueue = await fetch(`${address}/jobs/resolve_taxa`, {
      method: "POST",
      headers: { ...AUTH, "content-type": "application/json" },
      body: JSON.stringify({ taxonIds: [5] }),
    });
    expect(enqueue.status).toBe(202);
    const { links } = (await enqueue.json()) as { links: { self: string } };
    const job = await fetch(`${address}${links.self}`, { headers: AUTH });
    expect(job.status).toBe(200);
    expect((await fetch(`${address}/jobs`)).status).toBe(401);
    expect((await fetch(`${address}/health`)).status).toBe(200);
  } finally {
    await served.close();
  }
});
