/**
 * Pauses across real service processes: every instance honours a pause within about a second, jobs
 * keep arriving (HTTP, plain SQL) and wait, a running attempt finishes, resume starts them at once,
 * and a pause survives a restart. Named queues and cap groups are paused like tasks.
 */
import { sql } from "kysely";
import { expect } from "vitest";
import { pause, resume } from "../../src/lifecycle/pauses.ts";
import { AUTH, API_TOKEN } from "../helpers/app.ts";
import { insertTaxa, resetData, test, waitFor, type TestEnv } from "../helpers/env.ts";
import { killInstance, readiness, startInstance, WITH_TEST_TASKS, type Instance } from "../helpers/instances.ts";

// One job at a time per instance, so the main runner's local queue holds the rest; graphile-worker's
// own poll is slow, so a job that starts within a second of a resume was woken, not polled.
const SETTINGS = { API_TOKENS: API_TOKEN, WORKER_CONCURRENCY: "1", WORKER_POLL_INTERVAL_MS: "10000" };

async function api(instance: Instance, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${instance.baseUrl}${path}`, {
    method,
    headers: { ...AUTH, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function enqueue(instance: Instance, task: string, payloads: unknown[], query = ""): Promise<string[]> {
  const answer = await api(instance, "POST", `/jobs/${task}/batch${query}`, { payloads });
  expect(answer.status, JSON.stringify(answer.body)).toBe(202);
  return (answer.body.jobs as Array<{ jobId: string }>).map((job) => job.jobId);
}

/** Jobs among `ids` that an attempt was begun for (locked now, an attempt counted, or ended). */
async function touched(env: TestEnv, ids: string[]): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    select id::text from graphile_worker.jobs where id = any(${ids}::bigint[]) and (locked_at is not null or attempts > 0)
    union select id::text from observing_jobs.job_records where id = any(${ids}::bigint[]) and phase <> 'waiting'`.execute(env.db);
  return rows.map((row) => row.id);
}

async function succeeded(env: TestEnv, ids: string[]): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from observing_jobs.job_records where id = any(${ids}::bigint[]) and phase = 'succeeded'`.execute(env.db);
  return rows[0]!.n;
}

/** When the instance's "pauses changed" line first listed `target` (ms since the epoch). */
function appliedAt(instance: Instance, target: string): number {
  for (const line of instance.output().split("\n")) {
    if (!line.includes('"pauses changed"')) continue;
    const entry = JSON.parse(line) as { paused: string[]; timestamp: { seconds: number; nanos: number } };
    if (entry.paused.includes(target)) return entry.timestamp.seconds * 1000 + entry.timestamp.nanos / 1e6;
  }
  throw new Error(`the instance never logged that ${target} is paused`);
}

async function pausedOn(instance: Instance): Promise<string[]> {
  return ((await readiness(instance)).body.paused as Array<{ kind: string; name: string }>).map((held) => `${held.kind}:${held.name}`);
}

test.beforeEach(async ({ env }) => {
  await resetData(env);
  await sql`delete from observing_jobs.pauses`.execute(env.db);
});

test("two instances: a pause holds on both within a second, arrivals wait, the running attempt finishes, resume runs them at once", { timeout: 120_000 }, async ({ env }) => {
  const instances: Instance[] = [];
  try {
    for (let i = 0; i < 2; i++) instances.push(await startInstance(env.database.url, env.gbif.url, SETTINGS, WITH_TEST_TASKS));
    const [a, b] = instances as [Instance, Instance];
    // Before the pause: more jobs than both instances run at once, so some wait in a local queue.
    const before = await enqueue(a, "block_event_loop", Array.from({ length: 6 }, (_, i) => ({ blockMs: 0, waitMs: 2500, label: `before ${i}` })));
    await waitFor(async () => (await touched(env, before)).length >= 1, { timeoutMs: 15_000, message: "an attempt to start" });

    const paused = await api(a, "PUT", "/pauses/task/block_event_loop", { reason: "upstream outage drill" });
    expect(paused).toMatchObject({ status: 200, body: { paused: true, changed: true, pause: { kind: "task", name: "block_event_loop", pausedBy: expect.stringMatching(/^token:/), reason: "upstream outage drill" } } });
    for (const instance of instances) await waitFor(async () => (await pausedOn(instance)).includes("task:block_event_loop"), { timeoutMs: 5000, message: "each instance to see the pause" });
    // Each instance applied it within a second of the commit (its own log line says when).
    const pausedAt = Date.parse((paused.body.pause as { pausedAt: string }).pausedAt);
    for (const instance of instances) expect(appliedAt(instance, "task:block_event_loop") - pausedAt).toBeLessThan(1000);
    // Jobs fetched into a local queue before the pause go back to the table at once (not after its TTL).
    await waitFor(
      async () => {
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from graphile_worker.jobs where id = any(${before}::bigint[]) and locked_at is not null`.execute(env.db);
        return rows[0]!.n <= 2;
      },
      { timeoutMs: 1000, message: "the local queues' jobs to go back to the table" },
    );

    // Jobs keep arriving and wait: over HTTP on the other instance, and by plain SQL.
    const arrived = await enqueue(b, "block_event_loop", Array.from({ length: 5 }, () => ({ blockMs: 0 })));
    const { rows } = await sql<{ id: string }>`
      select (graphile_worker.add_job('block_event_loop', json_build_object('blockMs', 0))).id::text as id from generate_series(1, 3)`.execute(env.db);
    const added = rows.map((row) => row.id);
    const { rows: flagged } = await sql<{ flags: Record<string, boolean> }>`select flags from graphile_worker.jobs where id = ${added[0]!}::bigint`.execute(env.db);
    expect(flagged[0]!.flags).toEqual({ "pause:task:block_event_loop": true });
    // The running attempts finish; another task still runs on both (the runners fetch past the paused jobs).
    await waitFor(async () => (await succeeded(env, before)) >= 1, { timeoutMs: 15_000, message: "the running attempts to finish" });
    const control = await enqueue(b, "chaos_lookup", [{ name: "Puma concolor" }, { name: "Felis catus" }]);
    await waitFor(async () => (await succeeded(env, control)) === 2, { timeoutMs: 15_000, message: "an unpaused task to run" });
    const ranBefore = (await touched(env, before)).length;
    expect(ranBefore).toBeLessThanOrEqual(2);
    expect(await touched(env, [...arrived, ...added])).toEqual([]);
    const { rows: heldBack } = await sql<{ n: number }>`select count(*)::int as n from graphile_worker.jobs where id = any(${before}::bigint[]) and locked_at is null`.execute(env.db);
    expect(heldBack[0]!.n).toBe(before.length - ranBefore);

    const resumedAt = Date.now();
    const resumed = await api(b, "DELETE", "/pauses/task/block_event_loop?reason=drill%20over");
    expect(resumed).toMatchObject({ status: 200, body: { paused: false, changed: true, resumed: { name: "block_event_loop" } } });
    // The first waiting job starts at once on each instance (graphile-worker's own poll is 10 s).
    const waiting = [...arrived, ...added];
    await waitFor(async () => (await touched(env, waiting)).length >= 2, { timeoutMs: 3000, message: "jobs to start after the resume" });
    expect(Date.now() - resumedAt).toBeLessThan(2000);
    await waitFor(async () => (await succeeded(env, [...before, ...waiting])) === before.length + waiting.length, { timeoutMs: 30_000, message: "every job to run after the resume" });

    // Both writes are idempotent and the history says who did what.
    expect((await api(b, "DELETE", "/pauses/task/block_event_loop")).body).toMatchObject({ changed: false, resumed: null });
    const listing = await api(a, "GET", "/pauses");
    expect(listing.body.pauses).toEqual([]);
    expect((listing.body.events as Array<Record<string, unknown>>).slice(0, 2)).toMatchObject([
      { action: "resumed", kind: "task", name: "block_event_loop", reason: "drill over" },
      { action: "paused", kind: "task", name: "block_event_loop", reason: "upstream outage drill" },
    ]);
  } finally {
    for (const instance of instances) await killInstance(instance);
  }
});

test("a paused queue and a paused cap group survive a restart; other work runs; resume runs theirs", { timeout: 120_000 }, async ({ env }) => {
  await pause(env.db, env.registry, "queue", "maintenance", "test", "before the instance starts");
  await pause(env.db, env.registry, "group", "gbif", "test", "GBIF is down");
  let instance: Instance | undefined;
  try {
    instance = await startInstance(env.database.url, env.gbif.url, SETTINGS, WITH_TEST_TASKS);
    // Read at start, before the runners fetch.
    expect((await pausedOn(instance)).sort()).toEqual(["group:gbif", "queue:maintenance"]);
    const [taxon] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    const inGroup = await enqueue(instance, "resolve_taxa", [{ taxonIds: [taxon!] }]);
    // Any task's job in the paused queue waits, not only the queue's own tasks'.
    const inQueue = await enqueue(instance, "block_event_loop", [{ blockMs: 0 }], "?queue=maintenance");
    const control = await enqueue(instance, "block_event_loop", [{ blockMs: 0 }]);
    await waitFor(async () => (await succeeded(env, control)) === 1, { timeoutMs: 15_000, message: "unpaused work to run" });
    expect(await touched(env, [...inGroup, ...inQueue])).toEqual([]);

    instance.kill("SIGTERM");
    await instance.exited;
    instance = await startInstance(env.database.url, env.gbif.url, SETTINGS, WITH_TEST_TASKS);
    expect((await pausedOn(instance)).sort()).toEqual(["group:gbif", "queue:maintenance"]);
    const again = await enqueue(instance, "block_event_loop", [{ blockMs: 0 }]);
    await waitFor(async () => (await succeeded(env, again)) === 1, { timeoutMs: 15_000, message: "unpaused work to run after the restart" });
    expect(await touched(env, [...inGroup, ...inQueue])).toEqual([]);

    await resume(env.db, env.registry, "group", "gbif", "test");
    await waitFor(async () => (await succeeded(env, inGroup)) === 1, { timeoutMs: 5000, message: "the group's job to run after its resume" });
    expect(await touched(env, inQueue)).toEqual([]);
    await resume(env.db, env.registry, "queue", "maintenance", "test");
    await waitFor(async () => (await succeeded(env, inQueue)) === 1, { timeoutMs: 5000, message: "the queue's job to run after its resume" });
  } finally {
    await killInstance(instance);
  }
});
