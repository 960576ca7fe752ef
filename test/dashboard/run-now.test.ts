import Type from "typebox";
import { describe, expect } from "vitest";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { fieldsFromSchema, payloadFromForm } from "../../src/http/dashboard/schema-form.ts";
import { AUTH, buildTestApp } from "../helpers/app.ts";
import { resetData, test } from "../helpers/env.ts";
import { form, postForm, signIn, withCookies } from "./helpers.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

const Everything = Type.Object({
  count: Type.Integer({ minimum: 1, maximum: 10, default: 3, description: "How many." }),
  ratio: Type.Optional(Type.Number()),
  name: Type.Optional(Type.String({ minLength: 2, maxLength: 20 })),
  force: Type.Optional(Type.Boolean({ default: false })),
  colour: Type.Optional(Type.Union([Type.Literal("red"), Type.Literal("green")])),
  size: Type.Optional(Type.Enum(["s", "m", "l"])),
  ids: Type.Optional(Type.Array(Type.Integer())),
  tags: Type.Optional(Type.Array(Type.String())),
  nested: Type.Optional(Type.Object({ a: Type.Integer() })),
});

describe("the run-now form's fields come from the payload schema", () => {
  test("one field per property, its kind from the property's type", () => {
    const fields = fieldsFromSchema(Everything);
    expect(fields.map((field) => [field.name, field.kind, field.required])).toEqual([
      ["count", "integer", true],
      ["ratio", "number", false],
      ["name", "string", false],
      ["force", "boolean", false],
      ["colour", "enum", false],
      ["size", "enum", false],
      ["ids", "integer-list", false],
      ["tags", "string-list", false],
      ["nested", "json", false],
    ]);
    expect(fields[0]).toMatchObject({ minimum: 1, maximum: 10, default: 3, description: "How many." });
    expect(fields[4]!.options).toEqual(["red", "green"]);
    expect(fields[5]!.options).toEqual(["s", "m", "l"]);
  });

  test("turns what was typed into a payload, leaving empty inputs to the defaults and bad text for validation to name", () => {
    const fields = fieldsFromSchema(Everything);
    const typed = new URLSearchParams({
      "payload.count": " 4 ",
      "payload.ratio": "abc",
      "payload.name": "",
      "payload.force": "true",
      "payload.colour": "green",
      "payload.ids": "1, 2,x,",
      "payload.tags": "a, b",
      "payload.nested": '{"a": 1}',
    });
    expect(payloadFromForm(fields, typed)).toEqual({
      payload: { count: 4, ratio: "abc", force: true, colour: "green", ids: [1, 2, "x"], tags: ["a", "b"], nested: { a: 1 } },
      values: { count: " 4 ", ratio: "abc", name: "", force: "true", colour: "green", size: "", ids: "1, 2,x,", tags: "a, b", nested: '{"a": 1}' },
      errors: [],
    });
    expect(payloadFromForm(fields, new URLSearchParams({ "payload.nested": "{a:" })).errors).toEqual(["payload/nested is not valid JSON"]);
  });
});

describe("running a task from the dashboard", () => {
  test("the form for resolve_taxa has a labelled input per payload property, with its limits", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const page = (await app.inject({ url: "/dashboard/tasks/resolve_taxa", headers: AUTH })).body;
      const form = /<form method="post" action="\/dashboard\/tasks\/resolve_taxa\/run"[\s\S]*?<\/form>/.exec(page)![0];
      expect([...form.matchAll(/name="(payload\.[^"]+)"/g)].map((match) => match[1])).toEqual(["payload.taxonIds", "payload.kingdom", "payload.force", "payload.limit"]);
      expect(form).toContain('<label for="field-taxonIds">taxonIds</label>');
      expect(form).toContain("whole numbers, separated by commas");
      expect(form).toMatch(/<select id="field-force" name="payload\.force"[^>]*>\s*<option value="">default \(false\)<\/option>/);
      expect(form).toMatch(/<input type="text" inputmode="numeric" id="field-limit"/);
      expect(form).toContain("a whole number, min 1, max 1000, default 100, optional");
      expect(form).toContain('name="option.maxAttempts"');
    } finally {
      await app.close();
    }
  });

  test("invalid input comes back with the same messages as the API, next to its fields, and enqueues nothing", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const browser = await signIn(app);
      const response = await postForm(app, browser, "/dashboard/tasks/resolve_taxa/run", { "payload.taxonIds": "1, x", "payload.limit": "abc", "payload.kingdom": "Plantae", "option.maxAttempts": "0" });
      expect(response.statusCode).toBe(400);
      expect(response.body).toContain("option maxAttempts must be a whole number from 1 to 32767");
      expect(response.body).toContain("payload/limit must be integer");
      const again = await postForm(app, browser, "/dashboard/tasks/resolve_taxa/run", { "payload.taxonIds": "1, x", "payload.limit": "abc", "payload.kingdom": "Plantae" });
      expect(again.statusCode).toBe(400);
      const api = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: AUTH, payload: { taxonIds: [1, "x"], limit: "abc", kingdom: "Plantae" } });
      for (const message of api.json().message.split("; ")) expect(again.body).toContain(message);
      expect(again.body).toMatch(/<ul class="field-errors" id="field-taxonIds-errors"><li>payload\/taxonIds\/1 must be integer<\/li><\/ul>/);
      expect(again.body).toMatch(/<ul class="field-errors" id="field-limit-errors"><li>payload\/limit must be integer<\/li><\/ul>/);
      expect(again.body).toMatch(/id="field-limit" name="payload\.limit" aria-describedby="field-limit-help field-limit-errors" aria-invalid="true" value="abc"/);
      expect(again.body).toContain('value="Plantae"');
      expect(await env.db.selectFrom("observing_jobs.job_records").select("id").execute()).toEqual([]);
    } finally {
      await app.close();
    }
  });

  test("valid input enqueues an ad-hoc job as source http with the operator as actor, options applied", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const browser = await signIn(app);
      const response = await postForm(app, browser, "/dashboard/tasks/resolve_taxa/run", { "payload.taxonIds": "7, 8", "payload.force": "true", "payload.limit": "", "option.maxAttempts": "2", "option.priority": "-1" });
      expect(response.statusCode).toBe(303);
      const id = /^\/dashboard\/jobs\/(\d+)$/.exec(response.headers.location as string)![1]!;
      const record = await env.db.selectFrom("observing_jobs.job_records").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
      expect(record).toMatchObject({ task: "resolve_taxa", source: "http", max_attempts: 2, priority: -1, payload: { taxonIds: [7, 8], force: true, limit: 100 } });
      expect(record.enqueued_by).toMatch(/^token:[0-9a-f]{8}$/);
      const enqueued = (await findJob(env.db, id))!.timeline[0]!;
      expect(enqueued).toMatchObject({ event: "enqueued", actor: record.enqueued_by, source: "http" });
      const page = await app.inject({ url: response.headers.location as string, headers: { cookie: withCookies(browser.cookie, response) } });
      expect(page.body).toContain("Job enqueued.");
      // Shown once: the notice cookie is cleared as the page reads it.
      expect(page.cookies).toContainEqual(expect.objectContaining({ name: "observing_jobs_notice", value: "" }));
    } finally {
      await app.close();
    }
  });

  test("internal tasks have no form and cannot be run by hand", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const page = await app.inject({ url: "/dashboard/tasks/prune_job_history", headers: AUTH });
      expect(page.body).toContain("Internal tasks cannot be started by hand.");
      expect(page.body).not.toContain('action="/dashboard/tasks/prune_job_history/run"');
      const run = await app.inject({ method: "POST", url: "/dashboard/tasks/prune_job_history/run", headers: { ...AUTH, ...form({}).headers }, payload: "" });
      expect(run.statusCode).toBe(403);
      expect(await env.db.selectFrom("observing_jobs.job_records").select("id").execute()).toEqual([]);
    } finally {
      await app.close();
    }
  });
});
