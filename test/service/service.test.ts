import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect } from "vitest";
import { findTaxon, insertTaxa, listJobs, resetData, test, testEnvironment, waitFor, type TestEnv } from "../helpers/env.ts";
import { runToCompletion, startChild } from "../helpers/service-process.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

async function startService(env: TestEnv, overrides: Record<string, string> = {}) {
  const service = startChild(
    ["src/main.ts"],
    testEnvironment({ DATABASE_URL: env.database.url, GBIF_BASE_URL: env.gbif.url, WORKER_POLL_INTERVAL_MS: "500", ...overrides }),
  );
  await service.waitForStatus("/readyz", 200);
  return service;
}

describe("the service process", () => {
  // On the embedded PostgreSQL (no DATABASE_URL): test/service/embedded-postgres.test.ts.
  test("works a job enqueued by the CLI through the runner", async ({ env }) => {
    const service = await startService(env);
    try {
      const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
      const added = await runToCompletion(
        ["bin/observing-jobs.js", "add", "resolve_taxa", "--payload", JSON.stringify({ taxonIds: [id] })],
        testEnvironment({ DATABASE_URL: env.database.url, LOG_LEVEL: "warn" }),
      );
      expect(added.code).toBe(0);
      await waitFor(async () => (await findTaxon(env.db, id!)).status === "resolved", { message: "the job to resolve the taxon" });
      await waitFor(async () => (await listJobs(env.db)).length === 0, { message: "the job to leave the queue" });
      // Started without API_TOKENS: it says how to get in.
      expect(service.output()).toMatch(/no API credentials are configured.*set API_TOKENS to a token of at least 16 characters/);
    } finally {
      service.kill();
      expect(await service.exited).toBe(0);
    }
  });

  test("once ready, hands back the memory start-up used, in the main thread and the heartbeat thread", async ({ env }) => {
    const service = await startService(env);
    try {
      const line = await waitFor(
        () => service.output().split("\n").find((text) => text.includes('"released the memory start-up used"')),
        { message: "the start-up collection to be logged" },
      );
      type Release = { heapMb: { before: number; after: number }; youngGenerationMb: { before: number; after: number } };
      const { main, heartbeatThread } = JSON.parse(line) as Record<"main" | "heartbeatThread", Release | null>;
      expect(main!.heapMb.after).toBeLessThan(main!.heapMb.before);
      // Both young generations shrunk: only a memory-reducing collection does that.
      expect(main!.youngGenerationMb.after).toBeLessThan(main!.youngGenerationMb.before / 2);
      expect(heartbeatThread!.youngGenerationMb.after).toBeLessThan(heartbeatThread!.youngGenerationMb.before / 2);
    } finally {
      service.kill();
      expect(await service.exited).toBe(0);
    }
  });

  test("on SIGTERM finishes the job in flight, then exits 0", async ({ env }) => {
    const service = await startService(env);
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    env.gbif.script("Puma concolor", { delayMs: 1500, body: (await import("../../src/demo/fake-gbif.ts")).KNOWN_NAMES["Puma concolor"] });
    await runToCompletion(
      ["bin/observing-jobs.js", "add", "resolve_taxa", "--payload", JSON.stringify({ taxonIds: [id] })],
      testEnvironment({ DATABASE_URL: env.database.url, LOG_LEVEL: "warn" }),
    );
    await waitFor(() => env.gbif.matchRequests().length === 1, { message: "the job to call GBIF" });
    service.kill("SIGTERM");
    expect(await service.exited).toBe(0);
    expect((await findTaxon(env.db, id!)).status).toBe("resolved");
    expect(await listJobs(env.db)).toHaveLength(0);
    expect(service.output()).toMatch(/shut down cleanly/);
  });

  test("a second signal exits at once without waiting for the job", async ({ env }) => {
    const service = await startService(env);
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    env.gbif.script("Puma concolor", { delayMs: 60_000, body: {} });
    await runToCompletion(
      ["bin/observing-jobs.js", "add", "resolve_taxa", "--payload", JSON.stringify({ taxonIds: [id] })],
      testEnvironment({ DATABASE_URL: env.database.url, LOG_LEVEL: "warn" }),
    );
    await waitFor(() => env.gbif.matchRequests().length === 1, { message: "the job to call GBIF" });
    service.kill("SIGTERM");
    await waitFor(() => /shutting down/.test(service.output()), { message: "the shutdown to begin" });
    service.kill("SIGTERM");
    expect(await service.exited).toBe(1);
    expect(service.output()).toMatch(/second signal/);
  });

  test("refuses to start on a bad crontab line, naming it", async ({ env }) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-crontab-"));
    try {
      await writeFile(path.join(dir, "crontab"), "# schedule\n30 3 * * * resolve_taxon ?id=nightly\n");
      const result = await runToCompletion(
        ["src/main.ts"],
        testEnvironment({ DATABASE_URL: env.database.url, CRONTAB_FILE: path.join(dir, "crontab") }),
      );
      expect(result.code).toBe(1);
      // One line, like a bad setting: no error object, no stack.
      const lines = (result.stdout + result.stderr).split("\n").filter((line) => line.trim() !== "");
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0]!)).toMatchObject({
        severity: "CRITICAL",
        message: expect.stringMatching(/crontab line 2: unknown task 'resolve_taxon' \(did you mean 'resolve_taxa'\?\) \(in: 30 3 \* \* \* resolve_taxon \?id=nightly\)$/),
      });
      expect(lines[0]).not.toMatch(/stack/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("refuses to start without migrating when the schema is behind this build", async ({ env }) => {
    const { sql } = await import("kysely");
    const { EXPECTED_SCHEMA_VERSION } = await import("../../src/db/migrate.ts");
    await sql`delete from observing_jobs.kysely_migration where name = ${EXPECTED_SCHEMA_VERSION}`.execute(env.db);
    try {
      const result = await runToCompletion(["src/main.ts"], testEnvironment({ DATABASE_URL: env.database.url, MIGRATE_ON_START: "false" }));
      expect(result.code).toBe(1);
      expect(result.stdout + result.stderr).toMatch(/this build needs .*run `observing-jobs migrate` first/);
    } finally {
      await sql`insert into observing_jobs.kysely_migration (name, timestamp) values (${EXPECTED_SCHEMA_VERSION}, now()::text)`.execute(env.db);
    }
  });

  test("refuses to start on a bad setting, naming the variable", async () => {
    const result = await runToCompletion(["src/main.ts"], testEnvironment({ NODE_ENV: "production" }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/Invalid configuration: DATABASE_URL is required when NODE_ENV=production/);
  });
});
