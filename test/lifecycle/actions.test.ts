import { sql } from "kysely";
import { describe, expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { cancelJob, discardJob, findJob, IllegalTransitionError, JobNotFoundError, listJobs, retryJob } from "../../src/lifecycle/jobs.ts";
import { listJobs as listGraphileJobs, resetData, runDueJobs, test } from "../helpers/env.ts";
import { makeScript, registryWithTestTasks } from "../helpers/test-tasks.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

describe("operator actions", () => {
  test("cancel removes a job that has not started and records who did it", async ({ env }) => {
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { force: true }, { runAt: new Date(Date.now() + 3_600_000) });
    expect((await findJob(env.db, job.id))!.state).toBe("scheduled");
    const details = await cancelJob(env.db, job.id, "bob@observing.example");
    expect(details.state).toBe("cancelled");
    expect(details.timeline.at(-1)).toMatchObject({ event: "cancelled", actor: "bob@observing.example" });
    expect(await listGraphileJobs(env.db)).toHaveLength(0);
  });

  test("cancel refuses a running job, naming its state", async ({ env }) => {
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { force: true });
    await sql`update graphile_worker._private_jobs set locked_at = now(), locked_by = 'test-pool' where id = ${job.id}::bigint`.execute(env.db);
    const attempt = cancelJob(env.db, job.id, "bob");
    await expect(attempt).rejects.toBeInstanceOf(IllegalTransitionError);
    await expect(attempt).rejects.toThrow(/cannot cancel job \d+: it is running/);
    await sql`update graphile_worker._private_jobs set locked_at = null, locked_by = null where id = ${job.id}::bigint`.execute(env.db);
  });

  test("discard applies to dead jobs only; retry to dead or waiting ones", async ({ env }) => {
    const flaky = makeScript();
    flaky.failures = 1;
    const registry = registryWithTestTasks(env, { flaky });
    const job = await enqueueJob(env.db, registry, "flaky_task", {}, { maxAttempts: 1 });
    await expect(discardJob(env.db, job.id, "bob")).rejects.toThrow(/cannot discard job \d+: it is queued \(discard applies to dead jobs\)/);
    await expect(retryJob(env.db, job.id, "bob")).rejects.toThrow(/cannot retry job \d+: it is queued/);

    await runDueJobs(env, registry);
    expect((await findJob(env.db, job.id))!.state).toBe("dead");
    const details = await discardJob(env.db, job.id, "bob");
    expect(details.state).toBe("discarded");
    expect(details.timeline.map((event) => event.event)).toEqual(["enqueued", "started", "failed", "exhausted", "discarded"]);
    await expect(retryJob(env.db, job.id, "bob")).rejects.toThrow(/it is discarded/);
  });

  test("acting on an unknown job says so", async ({ env }) => {
    await expect(retryJob(env.db, "987654", "bob")).rejects.toBeInstanceOf(JobNotFoundError);
    expect(await findJob(env.db, "not-a-number")).toBeNull();
  });

  test("a job added by plain SQL can be cancelled before it ever ran", async ({ env }) => {
    const { rows } = await sql<{ id: string }>`select id from graphile_worker.add_job('resolve_taxa', '{}'::json, run_at => now() + interval '1 hour')`.execute(env.db);
    const details = await cancelJob(env.db, String(rows[0]!.id), "carol");
    expect(details).toMatchObject({ state: "cancelled", source: "sql" });
  });
});

describe("listing jobs", () => {
  test("newest first, filtered by task and state, paginated by cursor", async ({ env }) => {
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) ids.push((await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [i] })).id);
    const later = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [99] }, { runAt: new Date(Date.now() + 60_000) });

    const first = await listJobs(env.db, { task: "resolve_taxa", limit: 4 });
    expect(first.jobs.map((job) => job.id)).toEqual([later.id, ids[4], ids[3], ids[2]]);
    expect(first.jobs[0]!.state).toBe("scheduled");
    const second = await listJobs(env.db, { task: "resolve_taxa", limit: 4, before: first.nextCursor! });
    expect(second.jobs.map((job) => job.id)).toEqual([ids[1], ids[0]]);
    expect(second.nextCursor).toBeNull();

    expect((await listJobs(env.db, { state: "scheduled", limit: 10 })).jobs.map((job) => job.id)).toEqual([later.id]);
    expect((await listJobs(env.db, { state: "queued", limit: 10 })).jobs).toHaveLength(5);
    expect((await listJobs(env.db, { task: "prune_job_history", limit: 10 })).jobs).toHaveLength(0);
    expect((await listJobs(env.db, { from: new Date(Date.now() + 60_000), limit: 10 })).jobs).toHaveLength(0);
  });
});
