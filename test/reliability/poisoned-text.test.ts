/**
 * Text PostgreSQL cannot store (a NUL, a lone surrogate) in an error message, a stack or a
 * payload. Before sanitizing, graphile-worker's failJob statement failed on such a message: the
 * worker pool ended and restarted on every attempt and the job ended "attempts 3/3, last_error
 * null" while readiness stayed 200. Now the failure is recorded, cleaned, and the pool stays up;
 * and a runner that keeps crashing for any other reason fails readiness with that reason.
 */
import { EventEmitter } from "node:events";
import type { Runner, WorkerEvents } from "graphile-worker";
import { sql } from "kysely";
import Type from "typebox";
import { describe, expect, test as plain } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { findJob } from "../../src/lifecycle/jobs.ts";
import { registerTask, TaskRegistry } from "../../src/registry.ts";
import { ReadinessSignals } from "../../src/reliability/readiness.ts";
import { CRASH_LIMIT, SupervisedRunner } from "../../src/worker/supervisor.ts";
import { defineTask } from "../../src/task.ts";
import { needsSanitizing, REPLACEMENT_CHARACTER, sanitizeError, sanitizeJson, sanitizeText } from "../../src/storable-text.ts";
import { startWorker } from "../../src/worker/worker.ts";
import { listJobs, resetData, test, waitFor, type TestEnv } from "../helpers/env.ts";

const LONE_HIGH = "\uD83D";
const POISONED = `bad\u0000 answer ${LONE_HIGH} from upstream`;

function registryWithPoisonedTask(env: TestEnv): TaskRegistry {
  return new TaskRegistry([
    ...env.registry.all(),
    registerTask(
      "poisoned_task",
      defineTask({
        description: "fails with text PostgreSQL cannot store",
        payload: Type.Object({ note: Type.Optional(Type.String()) }),
        defaults: { maxAttempts: 1 },
        async run() {
          const error = new Error(POISONED);
          error.stack = `Error: ${POISONED}\n    at somewhere (file.ts:1:1)`;
          throw error;
        },
      }),
    ),
  ]);
}

describe("sanitizing", () => {
  plain("removes NUL, replaces lone surrogates, keeps everything else and returns unchanged values as they were", () => {
    expect(sanitizeText(POISONED)).toBe(`bad answer ${REPLACEMENT_CHARACTER} from upstream`);
    expect(sanitizeText("Puma concolor 🐆")).toBe("Puma concolor 🐆");
    expect(needsSanitizing("🐆")).toBe(false);
    expect(needsSanitizing("\uDC00")).toBe(true);
    const clean = { a: ["x", { b: 1 }] };
    expect(sanitizeJson(clean)).toBe(clean);
    expect(sanitizeJson({ [`k\u0000`]: [`v${LONE_HIGH}`, 2, null] })).toEqual({ k: [`v${REPLACEMENT_CHARACTER}`, 2, null] });

    class UpstreamProblem extends Error {
      readonly status = 502;
    }
    const error = new UpstreamProblem(POISONED, { cause: new Error("\u0000inner") });
    const cleaned = sanitizeError(error);
    expect(cleaned).toBe(error); // same object: instanceof checks and fields survive
    expect(cleaned).toBeInstanceOf(UpstreamProblem);
    expect(needsSanitizing(cleaned.message) || needsSanitizing(cleaned.stack!)).toBe(false);
    expect((cleaned.cause as Error).message).toBe("inner");
    expect(sanitizeError(`thrown\u0000 string`).message).toBe("thrown string");
  });
});

describe("a poisoned error message", () => {
  test.beforeEach(async ({ env }) => {
    await resetData(env);
  });

  test("is recorded cleaned; the job keeps its error, the pool stays up and no runner restarts", async ({ env }) => {
    const registry = registryWithPoisonedTask(env);
    const job = await enqueueJob(env.db, registry, "poisoned_task", {});
    const worker = await startWorker({ pool: env.pool, deps: { ...env.deps, registry }, observers: [], cronItems: [], concurrency: 2, pollIntervalMs: 100 });
    try {
      await waitFor(async () => (await listJobs(env.db, "poisoned_task"))[0]?.last_error ?? undefined, { timeoutMs: 30_000, message: "the failure to be recorded" });
      const [row] = await listJobs(env.db, "poisoned_task");
      expect(row).toMatchObject({ attempts: 1, locked_by: null, last_error: `bad answer ${REPLACEMENT_CHARACTER} from upstream` });
      expect(worker.isRunning()).toBe(true);
      expect(worker.runners.map((runner) => runner.crashLoop())).toEqual(worker.runners.map(() => null));
    } finally {
      await worker.stop();
    }
    const details = (await findJob(env.db, job.id))!;
    const failed = details.timeline.find((event) => event.event === "failed")!;
    expect(failed.error).toBe(`bad answer ${REPLACEMENT_CHARACTER} from upstream`);
    expect(failed.stack).toMatch(/^Error: bad answer \uFFFD from upstream\n/);
    expect(env.logs.some((line) => line.message === "job runner ended unexpectedly; restarting it")).toBe(false);
  });

  test("a payload holding a NUL (added by plain SQL) reaches history cleaned (and graphile-worker's statements, which keep the record, do not fail)", async ({ env }) => {
    const registry = registryWithPoisonedTask(env);
    // graphile-worker's payload column is json, which keeps the \u0000 escape; jsonb refuses it.
    const { rows } = await sql<{ id: string }>`
      select id from graphile_worker.add_job('poisoned_task', '{"note":"a\\u0000b\\ud83d"}'::json, max_attempts => 1)`.execute(env.db);
    const worker = await startWorker({ pool: env.pool, deps: { ...env.deps, registry }, observers: [], cronItems: [], concurrency: 1, pollIntervalMs: 100 });
    try {
      await waitFor(async () => (await findJob(env.db, rows[0]!.id))?.state === "dead", { timeoutMs: 30_000, message: "the job to be recorded dead" });
    } finally {
      await worker.stop();
    }
    const details = (await findJob(env.db, rows[0]!.id))!;
    expect(details.payload).toEqual({ note: `ab${REPLACEMENT_CHARACTER}` });
    expect(env.logs.filter((line) => line.message === "could not record the attempt's error detail in job history")).toEqual([]);
  });
});

describe("a runner that keeps crashing", () => {
  plain("fails readiness with the reason until a pool stays up", async () => {
    const events: WorkerEvents = new EventEmitter();
    let starts = 0;
    const { makeLogger } = await import("../../src/observability/logger.ts");
    const logger = makeLogger({ level: "silent", format: "json", version: "test", googleCloudProject: undefined });
    const runner = new SupervisedRunner({
      name: "main",
      logger,
      events,
      minRestartDelayMs: 1,
      maxRestartDelayMs: 1,
      poolStarted: async () => {},
      poolEnded: async () => {},
      // A runner that ends at once with the error graphile-worker reports when failJob cannot be written.
      startRunner: async () => {
        starts += 1;
        return { promise: Promise.reject(new Error("unsupported Unicode escape sequence")), stop: async () => {} } as unknown as Runner;
      },
    });
    const signals = new ReadinessSignals(events, { cronItems: 0, heartbeatIntervalMs: 1000, heartbeats: { lastWrittenAt: () => performance.now() } });
    await runner.start();
    try {
      await waitFor(() => starts > CRASH_LIMIT, { message: "the runner to crash repeatedly" });
      const { restarts } = signals.checks({ runners: [runner] });
      expect(restarts).toEqual({ ok: false, detail: expect.stringMatching(/runner 'main' keeps ending unexpectedly: \d+ pools in a row .*unsupported Unicode escape sequence/) });
    } finally {
      await runner.stop();
    }
  });
});
