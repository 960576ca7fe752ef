import { sql } from "kysely";
import { describe, expect } from "vitest";
import { enqueueJobs } from "../../src/enqueue.ts";
import { listJobs, resetData, runDueJobs, test, type TestEnv } from "../helpers/env.ts";
import { makeScript, registryWithTestTasks } from "../helpers/test-tasks.ts";
import { buildTestApp } from "../helpers/app.ts";
import { form, postForm, signIn, withCookies } from "./helpers.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

/** Dead flaky_task jobs whose last errors are the given ones (set through graphile-worker, so groups are predictable). */
async function makeDeadJobs(env: TestEnv, errors: string[]) {
  const registry = registryWithTestTasks(env, { flaky: { ...makeScript(), failures: 1_000 } });
  const jobs = await enqueueJobs(env.db, registry, "flaky_task", errors.map(() => ({})), { maxAttempts: 1 });
  await runDueJobs(env, registry);
  for (const [index, job] of jobs.entries()) {
    await sql`select graphile_worker.permanently_fail_jobs(array[${job.id}::bigint], ${errors[index]!})`.execute(env.db);
  }
  return { registry, ids: jobs.map((job) => job.id) };
}

describe("the dead-letter", () => {
  test("groups dead jobs by task and error, largest group first, errors shown as text", async ({ env }) => {
    const { registry } = await makeDeadJobs(env, ["GBIF answered 503", "GBIF answered 503", "GBIF answered 503", "<b>bad</b>\nsecond line"]);
    const app = await buildTestApp(env, { registry });
    try {
      const { cookie } = await signIn(app);
      const page = await app.inject({ url: "/dashboard/dead-letter", headers: { cookie } });
      expect(page.body).toContain("4 dead jobs in 2 groups.");
      const groups = [...page.body.matchAll(/<h2 class="group-title"><span class="group-count">(\d+)<\/span> × ([a-z_]+)<\/h2>\s*<pre class="error-text">([^<]*)<\/pre>/g)].map(
        (match) => [Number(match[1]), match[2], match[3]],
      );
      expect(groups).toEqual([
        [3, "flaky_task", "GBIF answered 503"],
        [1, "flaky_task", "&lt;b&gt;bad&lt;/b&gt;\nsecond line"],
      ]);
      expect(page.body).toContain("Retry all 3…");
      expect(page.body).toContain('<a href="/dashboard/jobs?task=flaky_task&amp;state=dead">list them</a>');
    } finally {
      await app.close();
    }
  });

  test("bulk retry sends one group back to the queue, recorded with the operator; bulk discard empties another", async ({ env }) => {
    const { registry, ids } = await makeDeadJobs(env, ["boom", "boom", "other"]);
    const app = await buildTestApp(env, { registry });
    try {
      const browser = await signIn(app);
      const { cookie } = browser;
      const page = (await app.inject({ url: "/dashboard/dead-letter", headers: { cookie } })).body;
      const keys = [...page.matchAll(/name="errorKey" value="([0-9a-f]{32})"/g)].map((match) => match[1]!);
      const [boomKey, otherKey] = [keys[0]!, keys.at(-1)!];
      const post = (action: string, values: Record<string, string>) => postForm(app, browser, `/dashboard/dead-letter/${action}`, values);

      expect((await post("retry", { task: "flaky_task", errorKey: boomKey.replace(/./, "x") })).statusCode).toBe(400);
      expect((await post("retry", { task: "flaky_task" })).statusCode).toBe(400);
      expect((await app.inject({ method: "POST", url: "/dashboard/dead-letter/retry", headers: { ...form({}).headers, cookie }, payload: form({ task: "flaky_task", errorKey: boomKey }).payload })).statusCode).toBe(403);

      const retried = await post("retry", { task: "flaky_task", errorKey: boomKey });
      expect(retried.statusCode).toBe(303);
      expect(retried.headers.location).toBe("/dashboard/dead-letter");
      const after = await app.inject({ url: retried.headers.location as string, headers: { cookie: withCookies(cookie, retried) } });
      expect(after.body).toContain("Retried 2 flaky_task jobs.");
      expect(after.body).toContain("1 dead job in 1 group.");
      const live = await listJobs(env.db, "flaky_task");
      expect(live.filter((job) => job.attempts === 0).map((job) => String(job.id)).sort()).toEqual([ids[0], ids[1]].sort());
      const retriedEvents = await env.db.selectFrom("observing_jobs.job_events").select(["job_id", "actor"]).where("event", "=", "retried").execute();
      expect(retriedEvents).toHaveLength(2);
      for (const event of retriedEvents) expect(event.actor).toMatch(/^token:[0-9a-f]{8}$/);

      const discarded = await post("discard", { task: "flaky_task", errorKey: otherKey });
      expect((await app.inject({ url: discarded.headers.location as string, headers: { cookie: withCookies(cookie, discarded) } })).body).toContain("Discarded 1 flaky_task job.");
      const record = await env.db.selectFrom("observing_jobs.job_records").select("phase").where("id", "=", ids[2]!).executeTakeFirstOrThrow();
      expect(record.phase).toBe("discarded");
      expect((await app.inject({ url: "/dashboard/dead-letter", headers: { cookie } })).body).toContain("The dead-letter is empty.");
    } finally {
      await app.close();
    }
  });

  test("notices come from the server's record of the action, never from the query string", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const { cookie } = await signIn(app);
      const phishing = "/dashboard/dead-letter?action=retry&done=5000&task=" + encodeURIComponent("resolve_taxa jobs. URGENT: sign in again at https://evil.example/login");
      const page = await app.inject({ url: phishing, headers: { cookie } });
      expect(page.statusCode).toBe(200);
      expect(page.body).not.toContain("evil.example");
      expect(page.body).not.toContain("Retried");
      for (const url of ["/dashboard/jobs/1?done=retry", "/dashboard/jobs/1?done=enqueued"]) {
        await enqueueJobs(env.db, env.registry, "resolve_taxa", [{}]);
        expect((await app.inject({ url, headers: { cookie } })).body).not.toMatch(/Job retried|Job enqueued/);
      }
      // A notice cookie the server did not sign shows nothing either.
      const forged = `observing_jobs_notice=${Buffer.from(JSON.stringify({ kind: "ok", text: "Sign in at evil.example" })).toString("base64url")}.forged`;
      expect((await app.inject({ url: "/dashboard/dead-letter", headers: { cookie: `${cookie}; ${forged}` } })).body).not.toContain("evil.example");
    } finally {
      await app.close();
    }
  });
});
