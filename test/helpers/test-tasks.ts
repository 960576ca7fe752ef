/**
 * Small tasks that exist only in tests, registered beside the real ones, for exercising the
 * lifecycle (retries, exhaustion, time limits, caps) without depending on any upstream.
 */
import { sql } from "kysely";
import Type from "typebox";
import { registerTask, TaskRegistry } from "../../src/registry.ts";
import { defineTask, type TaskDefaults } from "../../src/task.ts";
import type { TestEnv } from "./env.ts";

const Payload = Type.Object({ label: Type.Optional(Type.String()), apiToken: Type.Optional(Type.String()), account: Type.Optional(Type.Object({ key: Type.String(), name: Type.Optional(Type.String()) })) });

/** Behaviour shared between the test and the task: the test changes it, the task reads it. */
export interface Script {
  /** Attempts that throw before the task starts succeeding. */
  failures: number;
  calls: number;
  hookCalls: Array<{ jobId: string; error: string }>;
  hookThrows: boolean;
  inFlight: number;
  maxInFlight: number;
  /** Each run waits this long (simulated work), or until aborted. */
  workMs: number;
}

export function makeScript(): Script {
  return { failures: 0, calls: 0, hookCalls: [], hookThrows: false, inFlight: 0, maxInFlight: 0, workMs: 0 };
}

function work(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), reject(signal.reason)), { once: true });
  });
}

function scriptedTask(script: Script, defaults: TaskDefaults<unknown>) {
  return defineTask({
    description: "test task",
    payload: Payload,
    defaults,
    sensitive: ["account.key"],
    async run(_payload, { signal }) {
      script.calls += 1;
      script.inFlight += 1;
      script.maxInFlight = Math.max(script.maxInFlight, script.inFlight);
      try {
        if (script.workMs > 0) await work(script.workMs, signal);
        if (script.failures > 0) {
          script.failures -= 1;
          throw new Error(`scripted failure (${script.failures} left)`);
        }
      } finally {
        script.inFlight -= 1;
      }
    },
    async onExhausted(_payload, { job, error }) {
      script.hookCalls.push({ jobId: job.id, error: error.message });
      if (script.hookThrows) throw new Error("hook exploded");
    },
  });
}

/** The real registry plus `flaky_task` (max 3 attempts), `capped_task` (at most 2 at once) and `slow_task` (100 ms limit). */
export function registryWithTestTasks(env: TestEnv, scripts: { flaky: Script; capped?: Script; slow?: Script }): TaskRegistry {
  return new TaskRegistry([
    ...env.registry.all(),
    registerTask("flaky_task", scriptedTask(scripts.flaky, { maxAttempts: 3 })),
    registerTask("capped_task", scriptedTask(scripts.capped ?? makeScript(), { concurrency: { limit: 2, group: "tests" } })),
    registerTask("slow_task", scriptedTask(scripts.slow ?? makeScript(), { timeoutMs: 100 })),
  ]);
}

/** Makes every waiting job due now (retries included), through graphile-worker's public function. */
export async function makeJobsDue(env: TestEnv): Promise<void> {
  await sql`select graphile_worker.reschedule_jobs(array(select id from graphile_worker.jobs where locked_at is null), run_at => now())`.execute(env.db);
}
