/**
 * Pausing from the dashboard: the controls sit behind a confirmation, the action needs the session's
 * CSRF token, is recorded with the operator, and the tasks and queues pages show the paused state.
 */
import { sql } from "kysely";
import { expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { testAppForFile } from "../helpers/app.ts";
import { resetData, test } from "../helpers/env.ts";
import { form, postForm, signIn, withCookies, type Browser } from "./helpers.ts";

const app = testAppForFile();
let browser: Browser;
test.beforeEach(async ({ env }) => {
  await resetData(env);
  await sql`truncate observing_jobs.pauses, observing_jobs.pause_events`.execute(env.db);
  browser = await signIn(app());
});

const page = (url: string, cookie = browser.cookie) => app().inject({ method: "GET", url, headers: { cookie } });
const post = (url: string, values: Record<string, string>) => postForm(app(), browser, url, values);

test("a task's page offers pause behind a confirmation, for the task, its cap group and nothing it lacks", async () => {
  const body = (await page("/dashboard/tasks/resolve_taxa")).body;
  expect(body).toContain("Not paused: its jobs run as they come.");
  // The opener only opens the confirmation; the form inside it says what happens and asks for a reason.
  expect(body).toMatch(
    /<details class="confirm"><summary class="button danger">Pause task resolve_taxa…<\/summary>\s*<form method="post" action="\/dashboard\/pauses\/pause">\s*<input type="hidden" name="_csrf" value="[^"]+">/,
  );
  expect(body).toMatch(/Pause task resolve_taxa\? Within about a second no new attempt starts on any instance; running attempts finish, and new jobs wait until it is resumed\./);
  expect(body).toContain("Pause cap group gbif…");
  expect(body).not.toContain("Pause queue");
  expect((await page("/dashboard/tasks/refresh_thumbnails")).body).toContain("Pause queue wikidata…");
});

test("pausing needs the session's CSRF token", async ({ env }) => {
  const values = { kind: "task", name: "resolve_taxa", back: "/dashboard/tasks/resolve_taxa" };
  const forged = await app().inject({ method: "POST", url: "/dashboard/pauses/pause", ...form(values), headers: { ...form(values).headers, cookie: browser.cookie } });
  expect(forged.statusCode).toBe(403);
  expect((await sql`select 1 from observing_jobs.pauses`.execute(env.db)).rows).toEqual([]);
});

test("pause and resume from the dashboard, recorded with the operator; both pages show the state", async ({ env }) => {
  const paused = await post("/dashboard/pauses/pause", { kind: "group", name: "gbif", reason: "GBIF is down", back: "/dashboard/tasks/resolve_taxa" });
  expect(paused.statusCode).toBe(303);
  expect(paused.headers.location).toBe("/dashboard/tasks/resolve_taxa");
  const { rows } = await sql<{ paused_by: string; reason: string }>`select paused_by, reason from observing_jobs.pauses where kind = 'group' and name = 'gbif'`.execute(env.db);
  expect(rows).toEqual([{ paused_by: expect.stringMatching(/^token:/), reason: "GBIF is down" }]);

  const after = await page("/dashboard/tasks/resolve_taxa", withCookies(browser.cookie, paused));
  expect(after.body).toContain("Paused cap group gbif: no new attempt starts; waiting jobs stay queued.");
  expect(after.body).toMatch(/data-state="paused"[^>]*>paused<\/span>\s*<span class="muted">\(cap group gbif\) by token:[0-9a-f]+: GBIF is down<\/span>/);
  expect(after.body).toContain("Resume cap group gbif…");
  expect((await page("/dashboard/tasks")).body).toMatch(/<a href="\/dashboard\/tasks\/resolve_taxa">resolve_taxa<\/a> <span class="state" data-state="paused"/);

  await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [1] }, { queueName: "adhoc" });
  const queues = (await page("/dashboard/queues")).body;
  expect(queues).toContain("cap group gbif</strong> <span class=\"state\" data-state=\"paused\">paused</span>");
  expect(queues).toContain("Pause queue adhoc…");

  const resumed = await post("/dashboard/pauses/resume", { kind: "group", name: "gbif", back: "/dashboard/queues" });
  expect(resumed.statusCode).toBe(303);
  expect(resumed.headers.location).toBe("/dashboard/queues");
  expect((await sql`select 1 from observing_jobs.pauses`.execute(env.db)).rows).toEqual([]);
  expect((await page("/dashboard/queues", withCookies(browser.cookie, resumed))).body).toContain("Resumed cap group gbif: its waiting jobs start now.");
});

test("a bad or unknown target is refused naming it, and the return path cannot leave the dashboard", async () => {
  expect((await post("/dashboard/pauses/pause", { kind: "tasks", name: "resolve_taxa" })).statusCode).toBe(400);
  const unknown = await post("/dashboard/pauses/pause", { kind: "task", name: "resolve_taxon" });
  expect(unknown.statusCode).toBe(404);
  expect(unknown.body).toContain("unknown task &#39;resolve_taxon&#39; (did you mean &#39;resolve_taxa&#39;?).");
  expect((await post("/dashboard/pauses/pause", { kind: "task", name: "resolve_taxa", reason: "x".repeat(501) })).statusCode).toBe(400);
  expect((await post("/dashboard/pauses/pause", { kind: "task", name: "resolve_taxa", reason: "a\u0000b" })).statusCode).toBe(400);
  const offsite = await post("/dashboard/pauses/pause", { kind: "task", name: "resolve_taxa", back: "https://elsewhere.example/" });
  expect(offsite.headers.location).toBe("/dashboard/queues");
  expect((await post("/dashboard/pauses/stop", { kind: "task", name: "resolve_taxa" })).statusCode).toBe(404);
});
