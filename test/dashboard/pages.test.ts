import { sql } from "kysely";
import { describe, expect } from "vitest";
import { loadCrontab } from "../../src/cron/crontab.ts";
import { makeCronFreshness } from "../../src/cron/freshness.ts";
import { enqueueJob, enqueueJobs } from "../../src/enqueue.ts";
import type { App } from "../../src/http/app.ts";
import { AUTH, buildTestApp, type TestAppOptions } from "../helpers/app.ts";
import { resetData, runDueJobs, test, type TestEnv } from "../helpers/env.ts";
import { makeScript, registryWithTestTasks } from "../helpers/test-tasks.ts";
import { registerTask, TaskRegistry } from "../../src/registry.ts";
import { defineTask } from "../../src/task.ts";
import Type from "typebox";
import { form, withCookies } from "./helpers.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

async function withApp(env: TestEnv, run: (app: App) => Promise<void>, options: TestAppOptions = {}) {
  const app = await buildTestApp(env, options);
  try {
    await run(app);
  } finally {
    await app.close();
  }
}

const get = (app: App, url: string) => app.inject({ url, headers: AUTH });

/** Dead jobs of flaky_task, which fails every attempt; returns the registry that knows the task and the ids. */
async function makeDeadJobs(env: TestEnv, count: number) {
  const registry = registryWithTestTasks(env, { flaky: { ...makeScript(), failures: 1_000 } });
  const jobs = await enqueueJobs(env.db, registry, "flaky_task", Array.from({ length: count }, (_, index) => ({ label: `job ${index}` })), { maxAttempts: 1 });
  await runDueJobs(env, registry);
  return { registry, ids: jobs.map((job) => job.id) };
}

describe("pages", () => {
  test("every section renders for a signed-in operator, with its heading and the current section marked", async ({ env }) => {
    await withApp(env, async (app) => {
      const pages = [
        ["/dashboard", "Overview"],
        ["/dashboard/jobs", "Jobs"],
        ["/dashboard/dead-letter", "Dead-letter"],
        ["/dashboard/tasks", "Tasks &amp; schedules"],
        ["/dashboard/tasks/resolve_taxa", "resolve_taxa"],
        ["/dashboard/queues", "Queues"],
      ] as const;
      for (const [url, title] of pages) {
        const response = await get(app, url);
        expect(response.statusCode, url).toBe(200);
        expect(response.headers["content-type"]).toBe("text/html; charset=utf-8");
        expect(response.body).toContain(`<h1>${title}</h1>`);
        expect(response.body).toMatch(/<a href="[^"]+" aria-current="page">/);
        expect(response.body).toContain('<a class="skip" href="#main">Skip to content</a>');
      }
      expect((await get(app, "/dashboard/nowhere")).statusCode).toBe(404);
      expect((await get(app, "/dashboard/jobs/999999")).statusCode).toBe(404);
      expect((await get(app, "/dashboard/tasks/resolve_taxon")).statusCode).toBe(404);
    });
  });

  test("payloads, errors and task names are shown as inert text", async ({ env }) => {
    await withApp(env, async (app) => {
      const hostile = `<script>alert("x")</script>`;
      const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { kingdom: hostile }, {}, { source: "app" });
      await sql`update observing_jobs.job_records set last_error = ${`<img src=x onerror="alert(1)">`} where id = ${job.id}`.execute(env.db);
      const page = await get(app, `/dashboard/jobs/${job.id}`);
      expect(page.body).toContain("&lt;script&gt;alert(\\&quot;x\\&quot;)&lt;/script&gt;");
      expect(page.body).toContain("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;");
      expect(page.body).not.toContain(hostile);
      expect(page.body).not.toContain("<img");
      const list = await get(app, "/dashboard/jobs");
      expect(list.body).toContain("&lt;img src=x");
      expect(list.body).not.toContain("<img");
      // A filter value typed into the URL comes back as text too.
      const filtered = await get(app, `/dashboard/jobs?queue=${encodeURIComponent(`"><script>x</script>`)}`);
      expect(filtered.body).toContain('value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"');
    });
  });

  test("the job list is newest first, filtered, and paginated with the cursor, filters kept", async ({ env }) => {
    await withApp(env, async (app) => {
      const jobs = await enqueueJobs(env.db, env.registry, "resolve_taxa", Array.from({ length: 120 }, () => ({})));
      await enqueueJob(env.db, env.registry, "refresh_thumbnails", {});
      const ids = jobs.map((job) => job.id).reverse();
      const idsOn = (body: string) => [...body.matchAll(/<td data-label="Id"><a href="\/dashboard\/jobs\/(\d+)">/g)].map((match) => match[1]);

      const first = await get(app, "/dashboard/jobs?task=resolve_taxa&state=queued");
      expect(idsOn(first.body)).toEqual(ids.slice(0, 50));
      expect(first.body).not.toContain("← Newest");
      const older = /<a rel="next" href="([^"]+)">Older jobs →<\/a>/.exec(first.body)![1]!.replaceAll("&amp;", "&");
      expect(older).toBe(`/dashboard/jobs?task=resolve_taxa&state=queued&cursor=${ids[49]}`);

      const second = await get(app, older);
      expect(idsOn(second.body)).toEqual(ids.slice(50, 100));
      expect(second.body).toContain('<a href="/dashboard/jobs?task=resolve_taxa&amp;state=queued">← Newest</a>');
      const third = await get(app, /<a rel="next" href="([^"]+)">/.exec(second.body)![1]!.replaceAll("&amp;", "&"));
      expect(idsOn(third.body)).toEqual(ids.slice(100));
      expect(third.body).not.toContain("Older jobs");

      const thumbnails = await get(app, "/dashboard/jobs?task=refresh_thumbnails&queue=wikidata");
      expect(idsOn(thumbnails.body)).toHaveLength(1);
      expect(thumbnails.body).toContain("<option selected>refresh_thumbnails</option>");
      const none = await get(app, `/dashboard/jobs?from=${new Date(Date.now() + 3_600_000).toISOString().slice(0, 16)}`);
      expect(none.body).toContain("No job matches.");

      const bad = await get(app, "/dashboard/jobs?state=sleeping&from=yesterday");
      expect(bad.statusCode).toBe(400);
      expect(bad.body).toContain("state must be one of queued, scheduled, running, retry_wait, succeeded, dead, cancelled, discarded; from must be a date and time, got &quot;yesterday&quot;");
    });
  });

  test("a dead job's page shows attempts, errors with their stack, the timeline, and only the actions its state allows", async ({ env }) => {
    const { registry, ids } = await makeDeadJobs(env, 1);
    await withApp(
      env,
      async (app) => {
        const page = await get(app, `/dashboard/jobs/${ids[0]}`);
        expect(page.body).toContain('data-state="dead"');
        expect(page.body).toContain("<dd>1 of 1</dd>");
        expect(page.body).toContain("None: the job did not succeed (a result is kept if a retry does).");
        expect(page.body).toMatch(/<details class="stack"><summary class="error-text">scripted failure \(\d+ left\)<\/summary><pre>Error: scripted failure/);
        for (const event of ["enqueued", "started", "failed", "exhausted"]) expect(page.body).toContain(`data-event="${event}"`);
        expect(page.body).toContain(`action="/dashboard/jobs/${ids[0]}/retry"`);
        expect(page.body).toContain(`action="/dashboard/jobs/${ids[0]}/discard"`);
        expect(page.body).not.toContain(`action="/dashboard/jobs/${ids[0]}/cancel"`);
        expect(page.body).toContain("<summary class=\"button\">Retry…</summary>");
        expect(page.body).toContain("Yes, retry it");

        const refused = await app.inject({ method: "POST", url: `/dashboard/jobs/${ids[0]}/cancel`, headers: { ...AUTH, ...form({}).headers }, payload: "" });
        expect(refused.statusCode).toBe(409);
        expect(refused.body).toContain(`cannot cancel job ${ids[0]}: it is dead (cancel applies to queued, scheduled, retry_wait jobs)`);

        const retried = await app.inject({ method: "POST", url: `/dashboard/jobs/${ids[0]}/retry`, headers: { ...AUTH, ...form({}).headers }, payload: "" });
        expect(retried.statusCode).toBe(303);
        expect(retried.headers.location).toBe(`/dashboard/jobs/${ids[0]}`);
        const after = await app.inject({ url: retried.headers.location as string, headers: { ...AUTH, cookie: withCookies("", retried) } });
        expect(after.body).toContain("Job retried: it is back in the queue.");
        expect(after.body).toMatch(/data-event="retried"[\s\S]*<strong>token:[0-9a-f]{8}<\/strong>/);
        expect(after.body).toContain(`action="/dashboard/jobs/${ids[0]}/cancel"`);
        expect((await app.inject({ method: "POST", url: `/dashboard/jobs/${ids[0]}/explode`, headers: AUTH })).statusCode).toBe(404);
      },
      { registry },
    );
  });

  test("the overview counts jobs per state, charts the last hour from history and shows the lag", async ({ env }) => {
    const { registry } = await makeDeadJobs(env, 2);
    await enqueueJobs(env.db, env.registry, "resolve_taxa", [{}, {}, {}]);
    await enqueueJob(env.db, env.registry, "resolve_taxa", {}, { runAt: new Date(Date.now() + 3_600_000) });
    await sql`select graphile_worker.reschedule_jobs(array(select id from graphile_worker.jobs where task_identifier = 'resolve_taxa' and run_at <= now()), run_at => now() - interval '90 seconds')`.execute(env.db);
    await withApp(
      env,
      async (app) => {
        const page = await get(app, "/dashboard");
        const count = (state: string) => Number(new RegExp(`data-count="${state}">(\\d+)<`).exec(page.body)?.[1]);
        expect([count("queued"), count("scheduled"), count("running"), count("retry_wait"), count("dead")]).toEqual([3, 1, 0, 0, 2]);
        expect(page.body).toMatch(/Lag \(oldest ready job waiting\): <strong data-lag>1 min \d+ s<\/strong>/);
        expect(page.body).toContain("0 succeeded</span>");
        expect(page.body).toContain("2 failed attempts</span>");
        expect(page.body).toContain('data-live-src="/dashboard/live/overview"');
        expect(page.body).toContain("Worker pools: not available: this service does not report it yet.");
        // Cron status is the service's own cron freshness, always there: nothing is overdue in a fresh instance.
        expect(page.body).toContain("No cron entry is overdue.");

        const live = await get(app, "/dashboard/live/overview");
        expect(live.statusCode).toBe(200);
        expect(Object.keys(live.json().fragments).sort()).toEqual(["chart", "counts", "overdue", "pools"]);
        expect(live.json().fragments.counts).toContain('data-count="dead">2<');
      },
      { registry },
    );
  });

  test("worker pools come from the sources the service passes in, overdue cron from the one cron-freshness source", async ({ env }) => {
    const lastSeen = new Date(Date.now() - 5000);
    const sources = {
      workerPools: async () => [{ id: "pool-<1>", instance: "rev-7 host-a", runner: "main", lastSeen, status: "live" }],
    };
    // Started three days ago and never succeeded: the entries with stale= of 26h and 2d are overdue, the weekly one is not.
    const crontab = await loadCrontab(env.config.worker.crontabFile, env.registry);
    const cronFreshness = makeCronFreshness(env.db, crontab, { startedAt: new Date(Date.now() - 3 * 86_400_000), maxAgeMs: 0 });
    const overdueIds = (await cronFreshness.read()).filter((status) => status.overdue).map((status) => status.id);
    expect(overdueIds).toContain("resolve_taxa_nightly");
    expect(overdueIds).not.toContain("refresh_thumbnails_weekly");
    await withApp(
      env,
      async (app) => {
        const overview = await get(app, "/dashboard");
        expect(overview.body).toContain("<code>pool-&lt;1&gt;</code>");
        expect(overview.body).toContain('<span class="pool-status" data-status="live">live</span>');
        expect(overview.body).toMatch(/<strong>OVERDUE<\/strong> <code>resolve_taxa_nightly<\/code>/);
        const tasks = await get(app, "/dashboard/tasks");
        expect(tasks.body).toMatch(/<code>resolve_taxa_nightly<\/code> <strong class="overdue-flag">OVERDUE<\/strong>/);
        expect(tasks.body).not.toMatch(/<code>refresh_thumbnails_weekly<\/code> <strong/);
        // The same entries as /ready says (one source, not two computations).
        const ready = await app.inject({ url: "/ready" });
        expect(ready.json().overdueSchedules).toEqual(overdueIds);
        for (const id of overdueIds) expect(overview.body).toContain(`<strong>OVERDUE</strong> <code>${id}</code>`);
      },
      { sources, cronFreshness },
    );
    const failing = { workerPools: async () => Promise.reject(new Error("relation \"secret_table\" does not exist")) };
    await withApp(
      env,
      async (app) => {
        const overview = await get(app, "/dashboard");
        expect(overview.body).toContain("Worker pools: could not be read just now (see the service logs).");
        expect(overview.body).not.toContain("secret_table");
        expect(overview.body).toContain("No cron entry is overdue.");
      },
      { sources: failing },
    );
  });

  test("tasks and schedules: defaults, schedules in words, next fire, last run and last success of the cron jobs", async ({ env }) => {
    // As graphile-worker's cron adds them: by SQL, with `_cron` in the payload; history learns the source when they run.
    const addCronJob = async (ts: string, maxAttempts: number) => {
      const { rows } = await sql<{ id: string }>`
        select id::text from graphile_worker.add_job('resolve_taxa', ${JSON.stringify({ _cron: { ts, backfilled: false } })}::json, max_attempts => ${maxAttempts})`.execute(env.db);
      return rows[0]!.id;
    };
    const succeeded = await addCronJob("2024-01-01T03:30:00Z", 5);
    await runDueJobs(env);
    await env.db.insertInto("taxa").values({ scientific_name: "Puma concolor" }).execute();
    env.gbif.script("Puma concolor", { status: 503, body: {} });
    const failed = await addCronJob("2024-01-02T03:30:00Z", 1);
    await runDueJobs(env);
    // An ad-hoc job of the same task is neither the last cron run nor its last success.
    await enqueueJob(env.db, env.registry, "resolve_taxa", {}, {}, { source: "http", actor: "someone" });
    await withApp(env, async (app) => {
      const page = await get(app, "/dashboard/tasks");
      expect(page.body).toContain("At 03:30 (UTC)<br><code class=\"muted\">30 3 * * *</code>");
      expect(page.body).toContain("At 05:00, only on Sunday (UTC)");
      const row = /<td data-label="Entry"><code>resolve_taxa_nightly<\/code>[\s\S]*?<\/tr>/.exec(page.body)![0];
      expect(row).toContain(`<a href="/dashboard/jobs/${failed}">job ${failed}</a> <span class="state" data-state="dead"`);
      expect(row).toContain(`<a href="/dashboard/jobs/${succeeded}">job ${succeeded}</a> <span class="state" data-state="succeeded"`);
      const next = /<td data-label="Entry"><code>resolve_taxa_nightly<\/code>[\s\S]*?<time datetime="([^"]+)"/.exec(page.body)![1]!;
      expect(new Date(next).getUTCHours() * 60 + new Date(next).getUTCMinutes()).toBe(3 * 60 + 30);
      expect(page.body).toContain("<span class=\"muted\">internal (crontab only)</span>");

      const task = await get(app, "/dashboard/tasks/refresh_thumbnails");
      expect(task.body).toContain("<div><dt>Queue</dt><dd>wikidata</dd></div>");
      expect(task.body).toContain("&quot;staleAfterDays&quot;: {");
      expect(task.body).toContain("never (in history)");
    });
  });

  test("queues show depth and lag per queue and per task, live", async ({ env }) => {
    await enqueueJobs(env.db, env.registry, "refresh_thumbnails", [{}, {}]);
    await enqueueJob(env.db, env.registry, "resolve_taxa", {}, { runAt: new Date(Date.now() + 60_000) });
    await withApp(env, async (app) => {
      const page = await get(app, "/dashboard/queues");
      const cells = (queue: string) => {
        const row = new RegExp(`<tr><td data-label="Queue"><strong>${queue}</strong>[\\s\\S]*?</tr>`).exec(page.body)![0];
        return [...row.matchAll(/<td data-label="([^"]+)">([^<]*)<\/td>/g)].map((match) => `${match[1]}=${match[2]}`);
      };
      expect(cells("wikidata")).toEqual(["Ready=2", "Scheduled=0", "Running=0", "Retry wait=0", "Dead=0"]);
      expect(cells("\\(no named queue\\)")).toEqual(["Ready=0", "Scheduled=1", "Running=0", "Retry wait=0", "Dead=0"]);
      expect(page.body).toContain('<a href="/dashboard/jobs?task=refresh_thumbnails&amp;queue=wikidata">refresh_thumbnails</a>');
      const live = await get(app, "/dashboard/live/queues");
      expect(live.json().fragments.queues).toContain("<strong>wikidata</strong>");
    });
  });

  test("a job's page shows its result pretty-printed and escaped, once it succeeded", async ({ env }) => {
    const registry = new TaskRegistry([
      ...env.registry.all(),
      registerTask("report_task", defineTask({ description: "returns markup", payload: Type.Object({}), run: async () => ({ note: "<script>alert(1)</script>", rows: 2 }) })),
    ]);
    const job = await enqueueJob(env.db, registry, "report_task", {});
    await withApp(
      env,
      async (app) => {
        expect((await get(app, `/dashboard/jobs/${job.id}`)).body).toContain("None yet: a result is kept when the job succeeds.");
        await runDueJobs(env, registry);
        const page = await get(app, `/dashboard/jobs/${job.id}`);
        expect(page.body).toContain(`aria-label="Result of job ${job.id}"><code>{\n  &quot;note&quot;: &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;,\n  &quot;rows&quot;: 2\n}</code>`);
        expect(page.body).not.toContain("<script>alert(1)");
        expect((await get(app, `/dashboard/jobs/${job.id}/live`)).json().fragments.result).toContain("&quot;rows&quot;: 2");
        const silent = await enqueueJob(env.db, registry, "prune_job_history", {});
        await runDueJobs(env, registry);
        expect((await get(app, `/dashboard/jobs/${silent.id}`)).body).toContain("&quot;pruned&quot;: 0");
      },
      { registry },
    );
  });

  test("a fan-out whose batches have not started offers Cancel, as the API allows, though it has succeeded itself", async ({ env }) => {
    const parent = await enqueueJob(env.db, env.registry, "backfill_kingdom", { kingdom: "Nowhere" });
    await runDueJobs(env);
    // Its batches, as its handler would enqueue them (fan-out records the parent), not started yet.
    for (const id of [1, 2]) await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [id] }, { runAt: new Date(Date.now() + 3_600_000) }, { source: "task", parentId: parent.id });
    await withApp(env, async (app) => {
      const page = await get(app, `/dashboard/jobs/${parent.id}`);
      expect(page.body).toContain('data-state="succeeded"');
      expect(page.body).toContain(`action="/dashboard/jobs/${parent.id}/cancel"`);
      expect(page.body).toContain("The job itself (succeeded) is not changed; the 2 jobs it enqueued that have not started are removed from the queue (jobs already running finish).");
      expect(page.body).not.toContain(`action="/dashboard/jobs/${parent.id}/retry"`);

      const cancelled = await app.inject({ method: "POST", url: `/dashboard/jobs/${parent.id}/cancel`, headers: { ...AUTH, ...form({}).headers }, payload: "" });
      expect(cancelled.statusCode).toBe(303);
      const after = await get(app, `/dashboard/jobs/${parent.id}`);
      expect(after.body).not.toContain(`action="/dashboard/jobs/${parent.id}/cancel"`);
      const api = await app.inject({ url: `/jobs/${parent.id}`, headers: AUTH });
      expect(api.json().children).toMatchObject({ total: 2, waiting: 0, cancelled: 2 });
    });
  });

  test("a job's live endpoint returns its summary and history as rendered on the page", async ({ env }) => {
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", {});
    await withApp(env, async (app) => {
      const before = (await get(app, `/dashboard/jobs/${job.id}/live`)).json().fragments;
      expect(before.summary).toContain('data-state="queued"');
      await runDueJobs(env);
      const after = (await get(app, `/dashboard/jobs/${job.id}/live`)).json().fragments;
      expect(after.summary).toContain('data-state="succeeded"');
      expect(after.timeline).toContain('data-event="succeeded"');
      expect((await get(app, "/dashboard/jobs/424242/live")).statusCode).toBe(404);
    });
  });
});
