import { sql } from "kysely";
import { describe, expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { createJobClient, InvalidPayloadError } from "../../src/index.ts";
import { findJob, retryJob } from "../../src/lifecycle/jobs.ts";
import { findTaxon, insertTaxa, listJobs, performTask, resetData, runDueJobs, test } from "../helpers/env.ts";
import { makeJobsDue, makeScript, registryWithTestTasks } from "../helpers/test-tasks.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

describe("job history", () => {
  test("a succeeded job's state and history are readable after graphile-worker deleted it", async ({ env }) => {
    const [taxon] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [taxon] }, {}, { source: "cli" });
    expect((await findJob(env.db, job.id))!.state).toBe("queued");

    await runDueJobs(env);
    expect(await listJobs(env.db)).toHaveLength(0);
    const details = (await findJob(env.db, job.id))!;
    expect(details).toMatchObject({ state: "succeeded", task: "resolve_taxa", source: "cli", attempts: 1, maxAttempts: 8 });
    expect(details.payload).toEqual({ taxonIds: [taxon], force: false, limit: 100 });
    expect(details.finishedAt).toBeInstanceOf(Date);
    expect(details.timeline.map((event) => event.event)).toEqual(["enqueued", "started", "succeeded"]);
    expect(details.timeline[0]).toMatchObject({ source: "cli", attempt: 0 });
    expect(details.timeline[1]!.worker_id).toMatch(/pool-/);
    expect(details.timeline[2]!.duration_ms).toBeGreaterThan(0);
  });

  test("a job that fails twice then succeeds has three attempts with their errors", async ({ env }) => {
    const flaky = makeScript();
    flaky.failures = 2;
    const registry = registryWithTestTasks(env, { flaky });
    const job = await enqueueJob(env.db, registry, "flaky_task", { label: "x" });
    for (let round = 0; round < 3; round++) {
      await runDueJobs(env, registry);
      await makeJobsDue(env);
    }
    const details = (await findJob(env.db, job.id))!;
    expect(details.state).toBe("succeeded");
    expect(details.timeline.map((event) => [event.event, event.attempt])).toEqual([
      ["enqueued", 0],
      ["started", 1],
      ["failed", 1],
      ["started", 2],
      ["failed", 2],
      ["started", 3],
      ["succeeded", 3],
    ]);
    const failures = details.timeline.filter((event) => event.event === "failed");
    expect(failures.map((event) => event.error)).toEqual(["scripted failure (1 left)", "scripted failure (0 left)"]);
    expect(failures[0]!.stack).toMatch(/scripted failure/);
    expect(failures[0]!.run_at!.getTime()).toBeGreaterThan(failures[0]!.at.getTime());
  });

  test("a waiting retry shows as retry_wait with the next run time", async ({ env }) => {
    const flaky = makeScript();
    flaky.failures = 1;
    const registry = registryWithTestTasks(env, { flaky });
    const job = await enqueueJob(env.db, registry, "flaky_task", {});
    await runDueJobs(env, registry);
    const details = (await findJob(env.db, job.id))!;
    expect(details).toMatchObject({ state: "retry_wait", attempts: 1, lastError: "scripted failure (0 left)" });
    expect(details.runAt.getTime()).toBeGreaterThan(Date.now());
  });

  test("a job added with plain SQL runs and is recorded, first seen when it ran", async ({ env }) => {
    const [taxon] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    const { rows } = await sql<{ id: string }>`select id from graphile_worker.add_job('resolve_taxa', json_build_object('taxonIds', json_build_array(${taxon}::int)))`.execute(env.db);
    const id = String(rows[0]!.id);
    expect((await findJob(env.db, id))!).toMatchObject({ state: "queued", source: "sql", payload: null });

    await runDueJobs(env);
    const details = (await findJob(env.db, id))!;
    expect(details).toMatchObject({ state: "succeeded", source: "sql", payload: { taxonIds: [taxon] } });
    expect(details.timeline.map((event) => [event.event, event.source])).toEqual([
      ["enqueued", "sql"],
      ["started", null],
      ["succeeded", null],
    ]);
    expect((await findTaxon(env.db, taxon!)).status).toBe("resolved");
  });

  test("sensitive payload fields never reach history", async ({ env }) => {
    const registry = registryWithTestTasks(env, { flaky: makeScript() });
    const job = await enqueueJob(env.db, registry, "flaky_task", { label: "ok", apiToken: "s3cret", account: { key: "k3y", name: "main" } });
    const stored = JSON.stringify((await findJob(env.db, job.id))!.payload);
    expect(stored).not.toMatch(/s3cret|k3y/);
    expect((await findJob(env.db, job.id))!.payload).toEqual({ label: "ok", apiToken: "[redacted]", account: { key: "[redacted]", name: "main" } });
  });

  test("an oversized payload is stored as a bounded summary", async ({ env }) => {
    const registry = registryWithTestTasks(env, { flaky: makeScript() });
    const job = await enqueueJob(env.db, registry, "flaky_task", { label: "x".repeat(40_000) });
    expect((await findJob(env.db, job.id))!.payload).toMatchObject({ _truncated: true, bytes: 40_012 });
  });
});

describe("dead-letter", () => {
  test("an exhausted job runs its onExhausted hook once, stays dead, and an operator can retry it", async ({ env }) => {
    const flaky = makeScript();
    flaky.failures = 3;
    const registry = registryWithTestTasks(env, { flaky });
    const job = await enqueueJob(env.db, registry, "flaky_task", {});
    for (let round = 0; round < 4; round++) {
      await runDueJobs(env, registry);
      await makeJobsDue(env);
    }
    expect(flaky.calls).toBe(3);
    expect(flaky.hookCalls).toEqual([{ jobId: job.id, error: "scripted failure (0 left)" }]);
    let details = (await findJob(env.db, job.id))!;
    expect(details).toMatchObject({ state: "dead", attempts: 3, lastError: "scripted failure (0 left)" });
    expect(details.timeline.map((event) => event.event).slice(-2)).toEqual(["failed", "exhausted"]);

    details = await retryJob(env.db, job.id, "alice@observing.example");
    expect(details).toMatchObject({ state: "queued", attempts: 0 });
    expect(details.timeline.at(-1)).toMatchObject({ event: "retried", actor: "alice@observing.example" });

    await runDueJobs(env, registry);
    details = (await findJob(env.db, job.id))!;
    expect(details.state).toBe("succeeded");
    expect(details.timeline.filter((event) => event.event === "started")).toHaveLength(4);
    expect(flaky.hookCalls).toHaveLength(1);
  });

  test("a failing hook is logged and recorded, and the job is still dead", async ({ env }) => {
    const flaky = makeScript();
    flaky.failures = 1;
    flaky.hookThrows = true;
    const registry = registryWithTestTasks(env, { flaky });
    const job = await enqueueJob(env.db, registry, "flaky_task", {}, { maxAttempts: 1 });
    await runDueJobs(env, registry);
    const details = (await findJob(env.db, job.id))!;
    expect(details.state).toBe("dead");
    // The hook runs once the attempt has failed, before graphile-worker hears of the failure.
    expect(details.timeline.map((event) => event.event)).toEqual(["enqueued", "started", "failed", "hook_failed", "exhausted"]);
    expect(details.timeline[3]!.error).toBe("hook exploded");
    expect(env.logs.some((line) => line.message === "onExhausted hook failed" && line.jobId === job.id)).toBe(true);
  });

  test("resolve_taxa's hook marks the rows a dead batch could not finish", async ({ env }) => {
    const [done, stuck] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }, { scientific_name: "Felis concolor" }]);
    await performTask(env, "resolve_taxa", { taxonIds: [done] });
    env.gbif.script("Felis concolor", { status: 503, body: {} });
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [done!, stuck!] }, { maxAttempts: 1 });
    await runDueJobs(env);
    expect((await findJob(env.db, job.id))!.state).toBe("dead");
    expect((await findTaxon(env.db, done!)).status).toBe("resolved");
    expect(await findTaxon(env.db, stuck!)).toMatchObject({
      status: "error",
      last_error: expect.stringMatching(new RegExp(`resolve_taxa job ${job.id} gave up after 1 attempts: GBIF: HTTP 503`)),
    });
  });
});

describe("time limits", () => {
  test("a job past its time limit fails with a timeout error and is retried", async ({ env }) => {
    const slow = makeScript();
    slow.workMs = 10_000;
    const registry = registryWithTestTasks(env, { flaky: makeScript(), slow });
    const job = await enqueueJob(env.db, registry, "slow_task", {});
    await runDueJobs(env, registry);
    let details = (await findJob(env.db, job.id))!;
    expect(details).toMatchObject({ state: "retry_wait", attempts: 1, lastError: "task 'slow_task' timed out after 100 ms" });
    expect(details.timeline.find((event) => event.event === "failed")!.error).toBe("task 'slow_task' timed out after 100 ms");

    slow.workMs = 0;
    await makeJobsDue(env);
    await runDueJobs(env, registry);
    details = (await findJob(env.db, job.id))!;
    expect(details).toMatchObject({ state: "succeeded", attempts: 2 });
  });
});

describe("atomic enqueue", () => {
  test("a job enqueued in a rolled-back transaction never exists; in a committed one it runs", async ({ env }) => {
    const jobs = await createJobClient();
    let rolledBackId = "";
    await expect(
      env.db.transaction().execute(async (trx) => {
        const row = await trx.insertInto("taxa").values({ scientific_name: "Puma concolor" }).returning("id").executeTakeFirstOrThrow();
        rolledBackId = (await jobs.enqueue(trx, "resolve_taxa", { taxonIds: [row.id] })).id;
        throw new Error("the caller changed its mind");
      }),
    ).rejects.toThrow("the caller changed its mind");
    expect(await listJobs(env.db)).toHaveLength(0);
    expect(await findJob(env.db, rolledBackId)).toBeNull();
    expect(await env.db.selectFrom("taxa").selectAll().execute()).toHaveLength(0);

    const committed = await env.db.transaction().execute(async (trx) => {
      const row = await trx.insertInto("taxa").values({ scientific_name: "Puma concolor" }).returning("id").executeTakeFirstOrThrow();
      return { taxon: row.id, job: await jobs.enqueue(trx, "resolve_taxa", { taxonIds: [row.id] }) };
    });
    await runDueJobs(env);
    expect((await findTaxon(env.db, committed.taxon)).status).toBe("resolved");
    expect((await findJob(env.db, committed.job.id))!).toMatchObject({ state: "succeeded", source: "app" });
  });

  test("payloads are checked at run time too, before anything is written", async ({ env }) => {
    const jobs = await createJobClient();
    // The compiler rejects this call; a caller without types reaches the run-time check.
    const untyped = jobs.enqueue as (executor: unknown, task: string, payload: unknown) => Promise<unknown>;
    await expect(untyped(env.db, "resolve_taxa", { taxonIds: "1" })).rejects.toBeInstanceOf(InvalidPayloadError);
    expect(await listJobs(env.db)).toHaveLength(0);
  });

  test("many jobs of one task are enqueued all-or-nothing", async ({ env }) => {
    const jobs = await createJobClient();
    await expect(jobs.enqueueMany(env.db, "resolve_taxa", [{ taxonIds: [1] }, { taxonIds: [] }])).rejects.toThrow(
      /payloads\/1\/taxonIds must NOT have fewer than 1 items/,
    );
    expect(await listJobs(env.db)).toHaveLength(0);
    const created = await jobs.enqueueMany(env.db, "resolve_taxa", [{ taxonIds: [1] }, { taxonIds: [2] }, { taxonIds: [3] }]);
    expect(created.map((job) => job.jobKey)).toEqual([1, 2, 3].map((id) => expect.stringMatching(new RegExp(`^resolve_taxa:${id}-${id}:1:[A-Za-z0-9_-]{22}$`))));
    const details = await Promise.all(created.map((job) => findJob(env.db, job.id)));
    expect(details.map((job) => [job!.state, job!.source, job!.timeline[0]!.event])).toEqual([
      ["queued", "app", "enqueued"],
      ["queued", "app", "enqueued"],
      ["queued", "app", "enqueued"],
    ]);
  });
});
