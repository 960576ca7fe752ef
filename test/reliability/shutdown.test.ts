/**
 * Shutdown within Cloud Run's 10 seconds: readiness goes false at once, a job that outlasts the
 * abort deadline is interrupted and returned to the queue (attempt given back), another instance
 * runs it, and the process exits before the kill.
 */
import Type from "typebox";
import { describe, expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { registerTask } from "../../src/registry.ts";
import { defineTask } from "../../src/task.ts";
import { getEventListeners } from "node:events";
import { AttemptAbandonedError, executeTask, TaskInterruptedError, TaskTimeoutError } from "../../src/worker/execute.ts";
import { KNOWN_NAMES } from "../../src/demo/fake-gbif.ts";
import { insertTaxa, resetData, test, waitFor } from "../helpers/env.ts";
import { findEvents, findPools, hasSucceeded, killInstance, readiness, startInstance, type Instance } from "../helpers/instances.ts";

/** Cloud Run kills the instance this long after SIGTERM. */
const CLOUD_RUN_KILL_MS = 10_000;

test.beforeEach(async ({ env }) => {
  await resetData(env);
  await env.db.deleteFrom("observing_jobs.worker_heartbeats").execute();
});

describe("shutdown", () => {
  // Two instances start one after the other (the second must not take the job first): under load that
  // alone can take most of the default 30 s; the phases that matter have their own deadlines below.
  test("SIGTERM with a long job in flight: 503 at once, exit before 10 s, the job completes on another instance", { timeout: 90_000 }, async ({ env }) => {
    let a: Instance | undefined;
    let b: Instance | undefined;
    try {
      // Default shutdown deadlines (abort at 6 s, release at 8.5 s); GBIF may take a minute.
      a = await startInstance(env.database.url, env.gbif.url, { GBIF_TIMEOUT_MS: "60000" });
      const [taxonId] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
      env.gbif.script("Puma concolor", { delayMs: 60_000, body: KNOWN_NAMES["Puma concolor"] });
      const jobId = (await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [taxonId!] }, {}, { source: "cli" })).id;
      await waitFor(() => env.gbif.matchRequests().length === 1, { message: "the job to run on the first instance" });
      const poolIds = (await findPools(env.db, a.pid)).map((pool) => pool.pool_id);
      b = await startInstance(env.database.url, env.gbif.url);

      const signalledAt = Date.now();
      a.kill("SIGTERM");
      const ready = await waitFor(async () => {
        const answer = await readiness(a!);
        return answer.body.detail === "shutting down" ? answer : undefined;
      }, { timeoutMs: 2000, message: "readiness to say 'shutting down'" });
      expect(Date.now() - signalledAt).toBeLessThan(1000);
      expect(ready).toMatchObject({ status: 503, body: { status: "not_ready", detail: "shutting down" } });

      expect(await a.exited).toBe(0);
      const exitedAfterMs = Date.now() - signalledAt;
      expect(exitedAfterMs).toBeLessThan(CLOUD_RUN_KILL_MS);
      // The job outlived the 6 s abort deadline: the process waited for it until then, no longer.
      expect(exitedAfterMs).toBeGreaterThan(5500);

      await waitFor(() => hasSucceeded(env.db, jobId), { timeoutMs: 10_000, message: "the job to succeed on the other instance" });
      const events = await findEvents(env.db, jobId);
      expect(events.map((event) => [event.event, event.attempt])).toEqual([
        ["enqueued", 0],
        ["started", 1],
        ["rescued", 1],
        ["started", 1], // the interrupted attempt was given back
        ["succeeded", 1],
      ]);
      expect(events[2]).toMatchObject({ actor: "shutdown", worker_id: expect.stringMatching(/^pool-/) });
      expect(poolIds).toContain(events[2]!.worker_id);
      expect(events[2]!.error).toMatch(/interrupted when worker pool .* stopped \(shutdown\)/);
      expect(poolIds).not.toContain(events[3]!.worker_id);
      expect((await findPools(env.db, a.pid)).map((pool) => pool.status)).toEqual(["stopped", "stopped"]);
      expect(a.output()).toMatch(/shut down cleanly/);
    } finally {
      await killInstance(a);
      await killInstance(b);
    }
  });

  test("an attempt whose handler ignores its abort signal still ends when shutdown aborts it", async ({ env }) => {
    const stubborn = registerTask(
      "ignore_signal",
      defineTask({ description: "never settles", payload: Type.Object({}), run: () => new Promise<void>(() => {}) }),
    );
    const stop = new AbortController();
    const attempt = executeTask(stubborn, {}, { id: "1", attempt: 1, maxAttempts: 3, queueName: null }, env.deps, [stop.signal]);
    const abortedAt = performance.now();
    stop.abort();
    await expect(attempt).rejects.toThrow(TaskInterruptedError);
    expect(performance.now() - abortedAt).toBeLessThan(100);
  });

  test("attempts leave no listener on the pool's long-lived signals; the time limit and an abandoned pool each end an attempt with their own error", async ({ env }) => {
    const info = { id: "1", attempt: 1, maxAttempts: 3, queueName: null };
    const shutdown = new AbortController();
    const abandon = new AbortController();
    let left: AbortSignal | undefined;
    const quick = registerTask("quick", defineTask({ description: "returns", payload: Type.Object({}), run: async (_payload, context) => void (left = context.signal) }));
    for (let i = 0; i < 1000; i++) await executeTask(quick, {}, info, env.deps, [shutdown.signal, abandon.signal]);
    expect([getEventListeners(shutdown.signal, "abort").length, getEventListeners(abandon.signal, "abort").length]).toEqual([0, 0]);
    // Work a handler left running stops when its attempt ends.
    expect([left!.aborted, (left!.reason as Error).name]).toEqual([true, "AbortError"]);
    // A payload that fails its schema fails as such, even when the attempt was stopped before it began.
    const strict = registerTask("strict", defineTask({ description: "strict", payload: Type.Object({ n: Type.Integer() }), run: async () => {} }));
    const stoppedAlready = new AbortController();
    stoppedAlready.abort();
    await expect(executeTask(strict, { n: "x" }, info, env.deps, [stoppedAlready.signal])).rejects.not.toThrow(TaskInterruptedError);

    let seen: AbortSignal | undefined;
    const stubborn = registerTask(
      "ignore_signal",
      defineTask({ description: "never settles", payload: Type.Object({}), defaults: { timeoutMs: 50 }, run: (_payload, context) => ((seen = context.signal), new Promise<void>(() => {})) }),
    );
    await expect(executeTask(stubborn, {}, info, env.deps, [shutdown.signal, abandon.signal])).rejects.toThrow(TaskTimeoutError);
    expect((seen!.reason as Error).name).toBe("TimeoutError"); // as AbortSignal.timeout's
    const attempt = executeTask(stubborn, {}, info, env.deps, [shutdown.signal, abandon.signal]);
    const abandoned = new AttemptAbandonedError("pool-test");
    abandon.abort(abandoned);
    await expect(attempt).rejects.toBe(abandoned);
    expect(seen!.reason).toBe(abandoned);
    // Already stopped when it begins: the handler sees an aborted signal, the attempt ends at once.
    await expect(executeTask(stubborn, {}, info, env.deps, [shutdown.signal, abandon.signal])).rejects.toBe(abandoned);
    expect(getEventListeners(shutdown.signal, "abort").length).toBe(0);
  });
});
