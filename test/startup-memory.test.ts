import v8 from "node:v8";
import vm from "node:vm";
import { describe, expect } from "vitest";
import { describeInstance, HeartbeatWriter } from "../src/reliability/heartbeat.ts";
import { releaseStartupMemoryWhenReady, type Service, type StartupMemoryRelease } from "../src/service.ts";
import { releaseStartupMemory } from "../src/startup-memory.ts";
import { test, waitFor } from "./helpers/env.ts";

/** Garbage the way loading modules leaves it: many small objects, promoted to the old generation and then dropped. */
function churn(): number {
  let kept: Array<{ name: string; values: number[] }> = [];
  for (let i = 0; i < 400_000; i++) kept.push({ name: `module ${i}`, values: [i, i + 1, i + 2] });
  const count = kept.length;
  kept = [];
  return count + kept.length;
}

describe("releasing start-up memory", () => {
  test("returns the heap that start-up's garbage grew, and leaves no global gc behind", () => {
    const youngGeneration = () => v8.getHeapSpaceStatistics().find((space) => space.space_name === "new_space")!.physical_space_size / 1048576;
    expect(churn()).toBe(400_000);
    const youngBefore = youngGeneration();
    const release = releaseStartupMemory();
    expect(release).not.toBeNull();
    // 400,000 dropped objects are tens of MB of heap: a collection that did not run would leave
    // most of it committed.
    expect(release!.heapMb.after).toBeLessThan(release!.heapMb.before - 10);
    // Only a memory-reducing collection shrinks the young generation; an ordinary full one (what V8
    // runs by itself) keeps it at the size start-up grew it to.
    expect(youngGeneration()).toBeLessThan(youngBefore / 2);
    expect(release!.youngGenerationMb.after).toBeLessThan(release!.youngGenerationMb.before / 2);
    // The flag was on only while one context was made: neither this one nor a new one sees `gc`.
    expect("gc" in globalThis).toBe(false);
    expect(vm.runInNewContext("typeof gc")).toBe("undefined");
    // And it can be done again (the main thread's and the heartbeat thread's run one after the other).
    expect(releaseStartupMemory()).not.toBeNull();
  });

  test("the heartbeat thread runs its own, and answers null once closed", async ({ env }) => {
    const heartbeats = new HeartbeatWriter(describeInstance(null), {
      connectionString: env.database.url,
      // Beats only when asked (register, beat()): the interval never fires within the test.
      intervalMs: 600_000,
      rescueAfterMs: 1_800_000,
      stallLimitMs: 60_000,
      logger: env.logger,
      onDeclaredDead: () => {},
    });
    try {
      await heartbeats.register("pool-startup-memory", "main", []);
      const release = await heartbeats.releaseStartupMemory();
      // The thread's own young generation, grown by its start-up (Node's bootstrap, pg), shrunk.
      expect(release).not.toBeNull();
      expect(release!.youngGenerationMb.after).toBeLessThan(release!.youngGenerationMb.before / 2);
      // The main thread turned the flag off again once the thread had its context.
      expect("gc" in globalThis).toBe(false);
      expect(vm.runInNewContext("typeof gc")).toBe("undefined");
      // The thread still beats afterwards.
      const lastSeen = async () => (await env.db.selectFrom("observing_jobs.worker_heartbeats").select("last_seen").where("pool_id", "=", "pool-startup-memory").executeTakeFirstOrThrow()).last_seen.getTime();
      const seenBefore = await lastSeen();
      heartbeats.beat();
      await waitFor(async () => (await lastSeen()) > seenBefore, { timeoutMs: 5000, message: "a beat after the collection" });
    } finally {
      await heartbeats.close();
    }
    expect(await heartbeats.releaseStartupMemory()).toBeNull();
  });

  test("an entry point logs the collection at debug, and warns naming a thread that could not collect", async ({ env }) => {
    const release = { heapMb: { before: 40, after: 20 }, youngGenerationMb: { before: 16, after: 1 }, rssMb: { before: 125, after: 105 }, tookMs: 55 };
    const outcomes: Array<StartupMemoryRelease | null> = [{ main: release, heartbeatThread: release }, { main: release, heartbeatThread: null }, null];
    for (const outcome of outcomes) {
      env.logs.length = 0;
      const service = { releaseStartupMemory: () => Promise.resolve(outcome) } as unknown as Service;
      const logger = env.logger.child({});
      logger.level = "debug";
      releaseStartupMemoryWhenReady(service, logger);
      await new Promise((resolve) => setImmediate(resolve));
      const lines = env.logs.filter((line) => String(line.message).includes("memory start-up used"));
      if (outcome === null) expect(lines).toEqual([]);
      else if (outcome.heartbeatThread) expect(lines).toMatchObject([{ severity: "DEBUG", message: "released the memory start-up used" }]);
      else expect(lines).toMatchObject([{ severity: "WARNING", missed: ["heartbeatThread"] }]);
    }
  });
});
