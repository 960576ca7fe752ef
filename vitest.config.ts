import os from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // Each test file gets its own database cloned from a migrated template (see test/helpers/database.ts).
    pool: "forks",
    // Most files spend their time waiting on child processes, PostgreSQL and deadlines rather than
    // on the CPU, so more files run at once than there are cores (vitest's default is cores - 1,
    // one file at a time on a 2-core machine). Measured in CONTRIBUTING.md.
    maxWorkers: Math.max(3, os.availableParallelism()),
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
