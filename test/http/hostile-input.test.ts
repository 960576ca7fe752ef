/**
 * Every class of input that once made the service answer 500 (issue 19's fuzzing), by name: each
 * is now a 400 naming the field (or a 404 for an id no job can have), nothing is enqueued, and a
 * database error that still gets through is a 400 logged without the data it quotes.
 */
import { sql } from "kysely";
import { describe, expect } from "vitest";
import type { App } from "../../src/http/app.ts";
import { AUTH, buildTestApp } from "../helpers/app.ts";
import { listJobs, resetData, test, type TestEnv } from "../helpers/env.ts";
import { form } from "../dashboard/helpers.ts";

let app: App;

test.beforeAll(async ({ env }) => {
  app = await buildTestApp(env);
  // Routes only a test has: they hand a value straight to PostgreSQL, past every check at the edge.
  app.get("/test/database/:kind", async (request) => {
    const { kind } = request.params as { kind: string };
    if (kind === "nul-json") await sql`select ${'{"kingdom":"a\\u0000secret-payload-text"}'}::jsonb`.execute(env.db);
    if (kind === "bigint") await sql`select ${"99999999999999999999"}::bigint`.execute(env.db);
    if (kind === "date") await sql`select ${"2016-13-01T00:00:00Z"}::timestamptz`.execute(env.db);
    if (kind === "other") await sql`do $$ begin raise exception 'boom' using detail = 'secret-detail-text', hint = 'secret-hint-text'; end $$`.execute(env.db);
    return { ok: true };
  });
});
test.afterAll(async () => {
  await app.close();
});
test.beforeEach(async ({ env }) => {
  await resetData(env);
});

/** A POST whose body is sent as written, so JSON escapes such as \u0000 and \ud800 reach the parser. */
const postRaw = (url: string, body: string) => app.inject({ method: "POST", url, headers: { ...AUTH, "content-type": "application/json" }, payload: body });
const get = (url: string) => app.inject({ method: "GET", url, headers: AUTH });

async function expectNothingEnqueued(env: TestEnv) {
  expect(await listJobs(env.db)).toHaveLength(0);
  expect(await env.db.selectFrom("observing_jobs.job_records").select("id").execute()).toHaveLength(0);
}

describe("text PostgreSQL cannot store", () => {
  const bodies: Array<[string, string, string, string]> = [
    ["a lone surrogate in a body string", "/jobs/backfill_kingdom", '{"kingdom":"a\\ud800b"}', "payload/kingdom must be valid Unicode (it holds a lone surrogate)"],
    ["a lone low surrogate", "/jobs/resolve_taxa", '{"kingdom":"\\udc00"}', "payload/kingdom must be valid Unicode (it holds a lone surrogate)"],
    ["a NUL escape in a body string", "/jobs/backfill_kingdom", '{"kingdom":"Plan\\u0000tae"}', "payload/kingdom must not contain NUL characters"],
    ["a NUL in a batch payload", "/jobs/backfill_kingdom/batch", '{"payloads":[{"kingdom":"Plantae"},{"kingdom":"a\\u0000"}]}', "body/payloads/1/kingdom must not contain NUL characters"],
    ["a NUL in a property name", "/jobs/resolve_taxa", '{"a\\u0000b":1}', "payload has a property name that must not contain NUL characters"],
  ];
  for (const [label, url, body, message] of bodies) {
    test(`${label} is a 400 naming the field`, async ({ env }) => {
      const response = await postRaw(url, body);
      expect(response.statusCode).toBe(400);
      expect(response.json().message).toBe(message);
      await expectNothingEnqueued(env);
    });
  }

  for (const parameter of ["task", "queue"]) {
    test(`a NUL in GET /jobs?${parameter}= is a 400 naming it`, async () => {
      const response = await get(`/jobs?${parameter}=a%00b`);
      expect(response.statusCode).toBe(400);
      expect(response.json().message).toBe(`querystring/${parameter} must not contain NUL characters`);
    });
  }

  test("a NUL in an enqueue option (jobKey, queue) is a 400 naming it", async ({ env }) => {
    for (const parameter of ["jobKey", "queue"]) {
      const response = await postRaw(`/jobs/resolve_taxa?${parameter}=a%00b`, "{}");
      expect(response.statusCode).toBe(400);
      expect(response.json().message).toBe(`querystring/${parameter} must not contain NUL characters`);
    }
    await expectNothingEnqueued(env);
  });

  test("enqueueing from code refuses the same text with InvalidPayloadError", async ({ env }) => {
    const { enqueueJob, InvalidPayloadError } = await import("../../src/enqueue.ts");
    await expect(enqueueJob(env.db, env.registry, "backfill_kingdom", { kingdom: "a\u0000b" })).rejects.toThrow(InvalidPayloadError);
    await expect(enqueueJob(env.db, env.registry, "backfill_kingdom", { kingdom: "a\ud800" })).rejects.toThrow(/payload\/kingdom must be valid Unicode/);
    await expectNothingEnqueued(env);
  });
});

describe("ids above PostgreSQL's bigint", () => {
  const cases: Array<[string, () => ReturnType<typeof get>, string]> = [
    ["GET /jobs/9223372036854775808", () => get("/jobs/9223372036854775808"), "params/id must be a job id (a whole number from 1 to 9223372036854775807)"],
    ["GET /jobs?cursor=9999999999999999999", () => get("/jobs?cursor=9999999999999999999"), "querystring/cursor must be a job id (a whole number from 1 to 9223372036854775807)"],
    ["POST /jobs/9999999999999999999/retry", () => postRaw("/jobs/9999999999999999999/retry", "{}"), "params/id must be a job id (a whole number from 1 to 9223372036854775807)"],
  ];
  for (const [label, send, message] of cases) {
    test(`${label} is a 400`, async () => {
      const response = await send();
      expect(response.statusCode).toBe(400);
      expect(response.json().message).toBe(message);
    });
  }

  test("the largest bigint is a job id that does not exist: 404", async () => {
    expect((await get("/jobs/9223372036854775807")).statusCode).toBe(404);
    expect((await postRaw("/jobs/9223372036854775807/cancel", "{}")).statusCode).toBe(404);
  });
});

describe("URLs the router refuses before any route runs", () => {
  const cases: Array<[string, string, RegExp]> = [
    ["a lone surrogate percent-encoded in a path segment (bytes UTF-8 does not allow)", "/jobs/%ED%A0%80", /malformed percent-encoding/],
    ["a truncated percent-escape", "/jobs/1%E0%A4%A", /malformed percent-encoding/],
    ["a path segment longer than any job id or task name", `/jobs/${"1".repeat(500)}`, /a path segment is longer than 256 characters/],
  ];
  for (const [label, url, message] of cases) {
    test(`${label} is a 400 in the API's own shape, with the headers of every answer`, async () => {
      const response = await get(url);
      expect(response.statusCode).toBe(400);
      expect(response.headers["content-type"]).toBe("application/json");
      expect(response.headers).toMatchObject({ "x-content-type-options": "nosniff", "cache-control": "no-store" });
      expect(response.json()).toEqual({ statusCode: 400, error: "Bad Request", message: expect.stringMatching(message) });
    });
  }
});

describe("integers beyond the columns they are stored in", () => {
  const bodies: Array<[string, string, string, RegExp]> = [
    ["a taxon id above integer", "/jobs/resolve_taxa", '{"taxonIds":[100000000000000000000]}', /payload\/taxonIds\/0 must be <= 2147483647/],
    ["the first taxon id past integer", "/jobs/resolve_taxa", '{"taxonIds":[2147483648]}', /payload\/taxonIds\/0 must be <= 2147483647/],
    ["1e300 observations", "/jobs/check_backbone_freshness", '{"hotMinObservations":1e300}', /payload\/hotMinObservations must be <= 2147483647/],
    ["1e400 (Infinity once parsed)", "/jobs/check_backbone_freshness", '{"hotMinObservations":1e400}', /payload\/hotMinObservations must be/],
  ];
  for (const [label, url, body, message] of bodies) {
    test(`${label} is a 400 and enqueues nothing`, async ({ env }) => {
      const response = await postRaw(url, body);
      expect(response.statusCode).toBe(400);
      expect(response.json().message).toMatch(message);
      await expectNothingEnqueued(env);
    });
  }

  test("the largest taxon id an integer column holds is accepted", async () => {
    expect((await postRaw("/jobs/resolve_taxa", '{"taxonIds":[2147483647]}')).statusCode).toBe(202);
  });
});

describe("query-string integers are plain decimals", () => {
  for (const value of ["0x10", "1e1", "+7", " 7", "7.0", "", "0b1", "Infinity", "9007199254740993"]) {
    test(`priority=${JSON.stringify(value)} is refused, not coerced`, async ({ env }) => {
      const response = await postRaw(`/jobs/resolve_taxa?priority=${encodeURIComponent(value)}`, "{}");
      expect(response.statusCode).toBe(400);
      expect(response.json().message).toMatch(/querystring\/priority must be integer/);
      await expectNothingEnqueued(env);
    });
  }

  test("plain decimals, negative ones too, are read as integers", async () => {
    const response = await postRaw("/jobs/resolve_taxa?priority=-7&maxAttempts=3", "{}");
    expect(response.statusCode).toBe(202);
    expect((await get(`/jobs/${response.json().jobId}`)).json()).toMatchObject({ priority: -7, maxAttempts: 3 });
    expect((await get("/jobs?limit=0x10")).statusCode).toBe(400);
    expect((await get("/jobs?limit=10")).statusCode).toBe(200);
  });
});

describe("dates the validator once accepted but JavaScript or PostgreSQL cannot hold", () => {
  const dates = [
    ["a leap second", "2016-12-31T23:59:60Z"],
    ["year 0000", "0000-01-01T00:00:00Z"],
    ["an offset that carries the instant into year 10000", "9999-12-31T23:59:59-23:59"],
    ["an offset that carries it before year 1", "0001-01-01T00:00:00+01:00"],
    ["a day that does not exist", "2021-02-29T00:00:00Z"],
  ];
  for (const [label, date] of dates) {
    test(`runAt, from and to refuse ${label}`, async ({ env }) => {
      const enqueue = await postRaw(`/jobs/resolve_taxa?runAt=${encodeURIComponent(date!)}`, "{}");
      expect(enqueue.statusCode).toBe(400);
      expect(enqueue.json().message).toBe('querystring/runAt must match format "date-time"');
      for (const parameter of ["from", "to"]) {
        const list = await get(`/jobs?${parameter}=${encodeURIComponent(date!)}`);
        expect(list.statusCode).toBe(400);
        expect(list.json().message).toBe(`querystring/${parameter} must match format "date-time"`);
      }
      await expectNothingEnqueued(env);
    });
  }

  test("the edges of the range, odd offsets and fractions within it are accepted", async () => {
    for (const date of ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2030-01-01T00:00:00.123456789+14:00", "2030-06-30T12:00:00-23:59"]) {
      const response = await postRaw(`/jobs/resolve_taxa?runAt=${encodeURIComponent(date)}`, "{}");
      expect(response.statusCode, date).toBe(202);
      expect(response.json().runAt).toBe(new Date(date).toISOString());
    }
  });
});

describe("the same causes on the dashboard", () => {
  const dashboard = (url: string, init: { method?: "GET" | "POST"; payload?: string; headers?: Record<string, string> } = {}) =>
    app.inject({ method: init.method ?? "GET", url, headers: { ...AUTH, ...init.headers }, ...(init.payload === undefined ? {} : { payload: init.payload }) });

  test("a job id above bigint is a job that does not exist", async () => {
    for (const url of ["/dashboard/jobs/9999999999999999999", "/dashboard/jobs/9223372036854775808/live"]) {
      expect((await dashboard(url)).statusCode, url).toBe(404);
    }
    const action = await dashboard("/dashboard/jobs/9999999999999999999/cancel", { method: "POST", ...form({}) });
    expect(action.statusCode).toBe(404);
  });

  test("a NUL in a filter is a 400 page naming the field", async () => {
    const page = await dashboard("/dashboard/jobs?queue=%00");
    expect(page.statusCode).toBe(400);
    expect(page.body).toContain("The field &#39;queue&#39; must not contain NUL characters.");
  });

  test("a field name that is not one of ours is not repeated back", async () => {
    const page = await dashboard(`/dashboard/jobs?${encodeURIComponent("Sign in again at evil.example")}=%00`);
    expect(page.statusCode).toBe(400);
    expect(page.body).toContain("A field must not contain NUL characters.");
    expect(page.body).not.toContain("evil.example");
  });

  test("a cursor above bigint and an out-of-range date are shown as filter errors", async () => {
    const cursor = await dashboard("/dashboard/jobs?cursor=9999999999999999999");
    expect(cursor.statusCode).toBe(400);
    expect(cursor.body).toContain("cursor must be a job id");
    for (const date of ["0000-01-01T00:00", "2016-12-31T23:59:60Z", "9999-12-31T23:59:59-23:59"]) {
      const page = await dashboard(`/dashboard/jobs?from=${encodeURIComponent(date)}`);
      expect(page.statusCode, date).toBe(400);
      expect(page.body).toContain("from must be a date and time");
    }
    expect((await dashboard("/dashboard/jobs?from=2025-01-31T12:00")).statusCode).toBe(200);
  });

  test("dead-letter retry with a NUL in the task and run-now with a NUL in the kingdom are 400s, nothing enqueued", async ({ env }) => {
    const retry = await dashboard("/dashboard/dead-letter/retry", { method: "POST", ...form({ task: "a\u0000b", errorKey: "0".repeat(32) }) });
    expect(retry.statusCode).toBe(400);
    expect(retry.body).toContain("The field &#39;task&#39; must not contain NUL characters.");
    const run = await dashboard("/dashboard/tasks/resolve_taxa/run", { method: "POST", ...form({ "payload.kingdom": "a\u0000b" }) });
    expect(run.statusCode).toBe(400);
    expect(run.body).toContain("The field &#39;payload.kingdom&#39; must not contain NUL characters.");
    await expectNothingEnqueued(env);
  });
});

describe("database errors, the last line of defence", () => {
  const cases: Array<[string, string, RegExp]> = [
    ["text with a NUL (22P05)", "nul-json", /text the database cannot store/],
    ["a number out of range (22003)", "bigint", /outside the range the database stores/],
    ["a date out of range (22008)", "date", /date in the request is outside the range/],
  ];
  for (const [label, kind, message] of cases) {
    test(`${label} is a 400, logged without the value`, async ({ env }) => {
      const response = await app.inject({ url: `/test/database/${kind}` });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ statusCode: 400, error: "Bad Request", message: expect.stringMatching(message) });
      const line = env.logs.find((entry) => entry.message === "request refused: the database cannot store a value it holds");
      expect(line).toMatchObject({ err: { code: expect.stringMatching(/^22/) } });
      const logged = JSON.stringify(env.logs);
      for (const secret of ["secret-payload-text", "99999999999999999999", "2016-13-01"]) expect(logged).not.toContain(secret);
    });
  }

  test("any other database error is a 500 without internals, logged without its detail and hint", async ({ env }) => {
    const response = await app.inject({ url: "/test/database/other" });
    expect(response.statusCode).toBe(500);
    expect(response.json()).toEqual({ statusCode: 500, error: "Internal Server Error", message: "internal error" });
    const line = env.logs.find((entry) => entry.message === "request failed");
    expect(line).toMatchObject({ err: { message: "boom", code: "P0001" } });
    expect(JSON.stringify(env.logs)).not.toMatch(/secret-detail-text|secret-hint-text/);
  });
});
