import { expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { connectionsNeeded, planRunners, startWorker } from "../../src/worker/worker.ts";
import { resetData, test, waitFor } from "../helpers/env.ts";
import { makeScript, registryWithTestTasks } from "../helpers/test-tasks.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

test("capped tasks get a runner of their own; the others share the main one", async ({ env }) => {
  const registry = registryWithTestTasks(env, { flaky: makeScript() });
  const plans = planRunners(registry, 10);
  const byName = new Map(plans.map((plan) => [plan.name, { concurrency: plan.concurrency, tasks: plan.tasks.map((task) => task.name) }]));
  expect([...byName.keys()].sort()).toEqual(["gbif", "main", "tests"]);
  expect(byName.get("main")).toMatchObject({ concurrency: 10, tasks: expect.arrayContaining(["flaky_task", "slow_task", "prune_job_history"]) });
  expect(byName.get("main")!.tasks).not.toContain("capped_task");
  expect(byName.get("tests")).toEqual({ concurrency: 2, tasks: ["capped_task"] });
  expect(byName.get("gbif")).toEqual({ concurrency: 2, tasks: ["check_backbone_freshness", "resolve_taxa"] });
  expect(connectionsNeeded(plans)).toBe(10 + 1 + 2 + 1 + 2 + 1);
});

test("a per-task cap holds under load while other tasks use the rest", async ({ env }) => {
  const capped = makeScript();
  const flaky = makeScript();
  capped.workMs = 40;
  flaky.workMs = 40;
  const registry = registryWithTestTasks(env, { flaky, capped });
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) ids.push((await enqueueJob(env.db, registry, "capped_task", { label: String(i) })).id);
  for (let i = 0; i < 12; i++) ids.push((await enqueueJob(env.db, registry, "flaky_task", { label: String(i) })).id);

  const worker = await startWorker({ pool: env.pool, deps: { ...env.deps, registry }, observers: [], cronItems: [], concurrency: 8, pollIntervalMs: 200 });
  try {
    await waitFor(() => capped.calls === 12 && flaky.calls === 12 && capped.inFlight === 0 && flaky.inFlight === 0, {
      timeoutMs: 20_000,
      message: "all 24 jobs to run",
    });
  } finally {
    await worker.stop();
  }
  expect(capped.maxInFlight).toBe(2);
  expect(flaky.maxInFlight).toBeGreaterThan(2);
  const states = await Promise.all(ids.map(async (id) => (await findJob(env.db, id))!.state));
  expect(new Set(states)).toEqual(new Set(["succeeded"]));
});

test("with a local queue, a named queue stays strictly serial while its jobs and others are fetched in batches (graphile-worker#621)", async ({ env }) => {
  const serial = makeScript();
  serial.workMs = 20;
  const registry = registryWithTestTasks(env, { flaky: serial });
  const serialIds: string[] = [];
  for (let i = 0; i < 15; i++) {
    serialIds.push((await enqueueJob(env.db, registry, "flaky_task", { label: String(i) }, { queueName: "one_at_a_time" })).id);
    await enqueueJob(env.db, registry, "flaky_task", { label: `free ${i}` });
  }
  // The script counts every flaky_task; the named queue's own overlap is read from graphile-worker's locks.
  const worker = await startWorker({ pool: env.pool, deps: { ...env.deps, registry }, observers: [], cronItems: [], concurrency: 8, localQueueSize: 80, pollIntervalMs: 200 });
  const overlaps: string[] = [];
  let seenLocked = 0;
  const poll = setInterval(() => {
    void env.db
      .selectFrom("graphile_worker.jobs")
      .select("id")
      .where("queue_name", "=", "one_at_a_time")
      .where("locked_at", "is not", null)
      .execute()
      .then((rows) => {
        if (rows.length > 1) overlaps.push(rows.map((row) => row.id).join(","));
        if (rows.length === 1) seenLocked += 1;
      });
  }, 5);
  try {
    await waitFor(() => serial.calls === 30 && serial.inFlight === 0, { timeoutMs: 30_000, message: "all 30 jobs to run" });
  } finally {
    clearInterval(poll);
    await worker.stop();
  }
  expect(seenLocked).toBeGreaterThan(0); // the watch did see the queue at work
  // graphile-worker locks a named queue with its job: at most one of its jobs is ever locked.
  expect(overlaps).toEqual([]);
  expect(serial.maxInFlight).toBeGreaterThan(1); // the free jobs did run side by side
  const states = await Promise.all(serialIds.map(async (id) => (await findJob(env.db, id))!.state));
  expect(new Set(states)).toEqual(new Set(["succeeded"]));
});
