/**
 * CONTRIBUTING.md's worked example, kept honest: the task file from the page registers, its
 * crontab line passes the start-up check, and the page's code typechecks. The page's own tests
 * run in contributing-example.test.ts.
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";
import { checkCrontab } from "../../src/cron/crontab.ts";
import { loadRegistry, TaskRegistry } from "../../src/registry.ts";
import { writeContributingExample } from "../helpers/contributing.ts";

const root = path.resolve(import.meta.dirname, "../..");
const example = await writeContributingExample();
afterAll(() => example.remove());

describe("CONTRIBUTING.md's example", () => {
  test("the task file registers under its file name with the documented defaults", async () => {
    const registry = await loadRegistry(example.taskDirectory);
    expect(registry.names()).toEqual([example.taskName]);
    expect(registry.get(example.taskName)).toMatchObject({
      description: expect.stringMatching(/\S/),
      defaults: { maxAttempts: 3, timeoutMs: 30_000 },
    });
  });

  test("the crontab line passes the start-up check, also beside the real crontab", async () => {
    const registry = await loadRegistry(example.taskDirectory);
    const [entry] = checkCrontab(example.crontabLine, registry);
    expect(entry!.item).toMatchObject({ task: example.taskName, identifier: `${example.taskName}_weekly`, payload: { olderThanDays: 365 } });

    const withRealTasks = new TaskRegistry([...(await loadRegistry()).all(), ...registry.all()]);
    const crontab = await readFile(path.join(root, "crontab"), "utf8");
    const combined = checkCrontab(`${crontab}\n${example.crontabLine}\n`, withRealTasks);
    expect(combined.map((line) => line.item.identifier)).toEqual([...checkCrontab(crontab, withRealTasks).map((line) => line.item.identifier), `${example.taskName}_weekly`]);
  });

  test("the task file and its test typecheck", { timeout: 60_000 }, async () => {
    const config = path.join(example.taskDirectory, "tsconfig.json");
    await writeFile(config, JSON.stringify({ extends: "../tsconfig.json", include: [example.taskFile, example.testFile] }));
    const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
    const output = await promisify(execFile)(process.execPath, [tsc, "--noEmit", "-p", config]).then(
      () => "",
      (error: { stdout?: string }) => error.stdout ?? String(error),
    );
    expect(output).toBe("");
  });
});
