/**
 * Runs CONTRIBUTING.md's test of its example task, as written on the page. The page's test uses
 * the shared `test` fixture; here that fixture's registry holds the example task.
 */
import path from "node:path";
import { afterAll, vi } from "vitest";
import { loadRegistry } from "../../src/registry.ts";
import { writeContributingExample } from "../helpers/contributing.ts";
import type * as EnvHelpers from "../helpers/env.ts";

const example = await writeContributingExample();
afterAll(() => example.remove());

vi.doMock(path.resolve(import.meta.dirname, "../helpers/env.ts"), async (importOriginal) => {
  const helpers = await importOriginal<typeof EnvHelpers>();
  return {
    ...helpers,
    test: helpers.test.extend<{ env: EnvHelpers.TestEnv }>({
      env: [
        // eslint-disable-next-line no-empty-pattern
        async ({}, use) => {
          const env = await helpers.makeTestEnv();
          const registry = await loadRegistry(example.taskDirectory);
          await use({ ...env, registry, deps: { ...env.deps, registry } });
          await env.close();
        },
        { scope: "file" },
      ],
    }),
  };
});
// At the top level: the fixture is file-scoped, which vitest allows outside describe blocks only.
await import(example.testFile);
