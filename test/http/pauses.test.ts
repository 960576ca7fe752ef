/**
 * The pauses API: PUT and DELETE /pauses/{kind}/{name}, GET /pauses, and the paused state that
 * GET /tasks and GET /queues show.
 */
import { sql } from "kysely";
import { describe, expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { AUTH, testAppForFile } from "../helpers/app.ts";
import { resetData, test } from "../helpers/env.ts";

const app = testAppForFile();
test.beforeEach(async ({ env }) => {
  await resetData(env);
  await sql`truncate observing_jobs.pauses, observing_jobs.pause_events`.execute(env.db);
});

const put = (url: string, payload?: unknown) => app().inject({ method: "PUT", url, headers: AUTH, ...(payload === undefined ? {} : { payload: payload as object }) });
const del = (url: string) => app().inject({ method: "DELETE", url, headers: AUTH });

describe("PUT and DELETE /pauses/{kind}/{name}", () => {
  test("pause and resume are idempotent and recorded with the caller and the reason", async () => {
    const first = await put("/pauses/task/resolve_taxa", { reason: "GBIF answers 503" });
    expect(first.statusCode).toBe(200);
    expect(first.json()).toEqual({
      paused: true,
      changed: true,
      pause: { kind: "task", name: "resolve_taxa", pausedBy: expect.stringMatching(/^token:[0-9a-f]{8}$/), reason: "GBIF answers 503", pausedAt: expect.any(String) },
    });
    // Again, with another reason: the first pause stands.
    const again = await put("/pauses/task/resolve_taxa", { reason: "other" });
    expect(again.json()).toMatchObject({ changed: false, pause: { reason: "GBIF answers 503", pausedAt: first.json().pause.pausedAt } });
    // Without a body: no reason.
    expect((await put("/pauses/group/gbif")).json()).toMatchObject({ changed: true, pause: { kind: "group", name: "gbif", reason: null } });

    const listing = (await app().inject({ url: "/pauses", headers: AUTH })).json();
    expect(listing.pauses.map((held: { kind: string; name: string }) => `${held.kind}:${held.name}`)).toEqual(["group:gbif", "task:resolve_taxa"]);

    expect((await del("/pauses/task/resolve_taxa?reason=back")).json()).toMatchObject({ paused: false, changed: true, resumed: { name: "resolve_taxa", reason: "GBIF answers 503" } });
    expect((await del("/pauses/task/resolve_taxa")).json()).toEqual({ paused: false, changed: false, resumed: null });
    const events = (await app().inject({ url: "/pauses", headers: AUTH })).json().events;
    expect(events.map((event: { action: string; kind: string; reason: string | null }) => [event.action, event.kind, event.reason])).toEqual([
      ["resumed", "task", "back"],
      ["paused", "group", null],
      ["paused", "task", "GBIF answers 503"],
    ]);
  });

  test("an unknown task, group or queue is 404 with a did-you-mean", async () => {
    for (const [url, message] of [
      ["/pauses/task/resolve_taxon", "unknown task 'resolve_taxon' (did you mean 'resolve_taxa'?)"],
      ["/pauses/group/gbfi", "unknown cap group 'gbfi' (did you mean 'gbif'?)"],
      ["/pauses/queue/wikidat", "unknown queue 'wikidat' (did you mean 'wikidata'?)"],
      ["/pauses/queue/nothing-like-it", "unknown queue 'nothing-like-it'"],
    ] as const) {
      for (const response of [await put(url), await del(url)]) {
        expect(response.statusCode, url).toBe(404);
        expect(response.json().message).toBe(message);
      }
    }
    expect((await app().inject({ url: "/pauses", headers: AUTH })).json().events).toEqual([]);
  });

  test("a queue that jobs wait in may be paused though no task defaults to it", async ({ env }) => {
    await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [1] }, { queueName: "adhoc" });
    expect((await put("/pauses/queue/adhoc")).statusCode).toBe(200);
    // The longest queue name an enqueue accepts (128) can be paused and resumed too.
    const longest = "q".repeat(128);
    await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [2] }, { queueName: longest });
    expect((await put(`/pauses/queue/${longest}`)).statusCode).toBe(200);
    expect((await del(`/pauses/queue/${longest}`)).statusCode).toBe(200);
  });

  test("bad input is 400 naming the field, never a 5xx", async () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ["/pauses/tasks/resolve_taxa", undefined, /^params\/kind must be equal to one of the allowed values/],
      ["/pauses/task/resolve_taxa", { reason: "a\u0000b" }, /^body\/reason /],
      ["/pauses/task/resolve_taxa", { reason: "x".repeat(501) }, /^body\/reason must NOT have more than 500 characters/],
      ["/pauses/task/resolve_taxa", { why: "typo" }, /^body must NOT have additional properties/],
      ["/pauses/task/resolve_taxa", ["not an object"], /^body must be object/],
      [`/pauses/task/${"a".repeat(201)}`, undefined, /^params\/name must NOT have more than 200 characters/],
      [`/pauses/task/${"a".repeat(257)}`, undefined, /path segment is longer than 256 characters/],
      ["/pauses/task/%00", undefined, /^params\/name /],
      ["/pauses/task/resolve_taxa?reason=x", undefined, /querystring/],
    ];
    for (const [url, payload, message] of cases) {
      const response = await put(url, payload);
      expect(response.statusCode, url).toBe(400);
      expect(response.json().message, url).toMatch(message);
    }
    const resume = await del("/pauses/task/resolve_taxa?reason=%00");
    expect(resume.statusCode).toBe(400);
    expect(resume.json().message).toMatch(/^querystring\/reason /);
  });

  test("needs a credential like every other write", async () => {
    expect((await app().inject({ method: "PUT", url: "/pauses/task/resolve_taxa" })).statusCode).toBe(401);
    expect((await app().inject({ method: "DELETE", url: "/pauses/task/resolve_taxa" })).statusCode).toBe(401);
    expect((await app().inject({ url: "/pauses" })).statusCode).toBe(401);
  });
});

describe("paused state in GET /tasks and GET /queues", () => {
  test("a task held by its own pause, its group's or its default queue's says so", async ({ env }) => {
    await put("/pauses/group/gbif", { reason: "GBIF is down" });
    await put("/pauses/queue/wikidata");
    const tasks = (await app().inject({ url: "/tasks", headers: AUTH })).json().tasks as Array<{ name: string; paused: { kind: string; name: string } | null; schedules: Array<{ paused: boolean }> }>;
    const pausedOf = (name: string) => tasks.find((task) => task.name === name)!.paused;
    expect(pausedOf("resolve_taxa")).toMatchObject({ kind: "group", name: "gbif", reason: "GBIF is down" });
    expect(pausedOf("check_backbone_freshness")).toMatchObject({ kind: "group", name: "gbif" });
    expect(pausedOf("refresh_thumbnails")).toMatchObject({ kind: "queue", name: "wikidata" });
    expect(pausedOf("sync_conservation_status")).toBeNull();
    expect(tasks.find((task) => task.name === "resolve_taxa")!.schedules.every((schedule) => schedule.paused)).toBe(true);

    await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [1] });
    await enqueueJob(env.db, env.registry, "sync_conservation_status", {});
    const queues = (await app().inject({ url: "/queues", headers: AUTH })).json().queues as Array<{ task: string; paused: unknown }>;
    expect(queues.find((row) => row.task === "resolve_taxa")!.paused).toMatchObject({ kind: "group", name: "gbif" });
    expect(queues.find((row) => row.task === "sync_conservation_status")!.paused).toBeNull();
  });
});
