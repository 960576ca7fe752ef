import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { INT4_MAX } from "../src/input-limits.ts";
import Type from "typebox";
import { compilePayloadValidator } from "../src/payload-validation.ts";
import { loadRegistry, registerTask, TaskRegistry, UnknownTaskError } from "../src/registry.ts";
import { PROJECT_ROOT } from "./helpers/service-process.ts";

describe("the task registry", () => {
  it("is derived from tasks/: one file per task, named by its file", async () => {
    const registry = await loadRegistry();
    expect(registry.names()).toContain("resolve_taxa");
    const task = registry.get("resolve_taxa");
    expect(task.defaults).toMatchObject({ maxAttempts: 8, queueName: null, priority: 0, jobKeyMode: "replace", timeoutMs: 50_000 });
    expect(task.schema).toMatchObject({ type: "object" });
  });

  it("bounds every integer of every task's payload to what a PostgreSQL integer column holds", async () => {
    const registry = await loadRegistry();
    const unbounded: string[] = [];
    const walk = (schema: unknown, at: string) => {
      if (!schema || typeof schema !== "object") return;
      const node = schema as { type?: unknown; minimum?: number; maximum?: number; properties?: Record<string, unknown>; items?: unknown; anyOf?: unknown[] };
      if (node.type === "integer" || node.type === "number") {
        if (node.type === "number" || node.maximum === undefined || node.maximum > INT4_MAX || node.minimum === undefined || node.minimum < -INT4_MAX - 1) unbounded.push(at);
      }
      for (const [name, child] of Object.entries(node.properties ?? {})) walk(child, `${at}/${name}`);
      if (node.items) walk(node.items, `${at}/items`);
      for (const [index, child] of (node.anyOf ?? []).entries()) walk(child, `${at}/anyOf/${index}`);
    };
    for (const task of registry.all()) walk(task.schema, task.name);
    expect(unbounded, "payload numbers without bounds an integer column holds").toEqual([]);
  });

  it("refuses a time limit a timer cannot hold (it would fire after 1 ms)", () => {
    const task = (timeoutMs: unknown) => registerTask("one_task", { description: "x", payload: { type: "object" }, defaults: { timeoutMs }, async run() {} });
    expect(task(2 ** 31 - 1).defaults.timeoutMs).toBe(2 ** 31 - 1);
    for (const timeoutMs of [0, -1, 1.5, Number.POSITIVE_INFINITY, 2 ** 31, "60000"]) {
      expect(() => task(timeoutMs)).toThrow(`one_task: defaults.timeoutMs must be an integer from 1 to 2147483647, got ${String(timeoutMs)}`);
    }
  });

  it("makes a concurrency cap global unless the task says per instance, and refuses caps that cannot hold", () => {
    const task = (name: string, concurrency: unknown) =>
      registerTask(name, { description: "x", payload: { type: "object" }, defaults: { concurrency }, async run() {} });
    expect(task("one_task", { limit: 2, group: "shared" }).defaults.concurrency).toEqual({ limit: 2, group: "shared", scope: "global" });
    expect(task("one_task", { limit: 1, scope: "instance" }).defaults.concurrency).toEqual({ limit: 1, group: "one_task", scope: "instance" });
    expect(() => task("one_task", { limit: 0 })).toThrow(/defaults\.concurrency\.limit must be an integer from 1 to 1000, got 0/);
    expect(() => task("one_task", { limit: 1.5 })).toThrow(/defaults\.concurrency\.limit/);
    expect(() => task("one_task", { limit: 2, scope: "cluster" })).toThrow(/defaults\.concurrency\.scope must be 'global' or 'instance', got 'cluster'/);
    expect(() => new TaskRegistry([task("one_task", { limit: 2, group: "main" })])).toThrow(/concurrency group 'main' is reserved/);
    expect(() => new TaskRegistry([task("one_task", { limit: 2, group: "g" }), task("two_task", { limit: 2, group: "g", scope: "instance" })])).toThrow(
      /share concurrency group 'g' with different scopes \(global, instance\)/,
    );
    expect(() => new TaskRegistry([task("one_task", { limit: 2, group: "g" }), task("two_task", { limit: 3, group: "g" })])).toThrow(/different limits \(2, 3\)/);
  });

  it("fills a payload's schema defaults into a copy, and leaves the caller's object as it was", () => {
    const withDefaults = compilePayloadValidator(Type.Object({ limit: Type.Optional(Type.Integer({ default: 100 })), nested: Type.Optional(Type.Object({ on: Type.Optional(Type.Boolean({ default: true })) })) }));
    const payload = { nested: {} };
    expect(withDefaults(payload)).toEqual({ ok: true, value: { limit: 100, nested: { on: true } } });
    expect(payload).toEqual({ nested: {} });
    // A property named "default" is not a default: such a schema validates the caller's object as it is.
    const withoutDefaults = compilePayloadValidator(Type.Object({ default: Type.String() }, { additionalProperties: false }));
    const plain = { default: "x" };
    const result = withoutDefaults(plain);
    expect(result).toEqual({ ok: true, value: { default: "x" } });
    expect(result.ok && result.value).toBe(plain);
    expect(withoutDefaults({ default: 1 })).toEqual({ ok: false, errors: ["payload/default must be string"] });
  });

  it("suggests the closest name for a typo", async () => {
    const registry = await loadRegistry();
    expect(() => registry.get("resolve_taxon")).toThrow(new UnknownTaskError("resolve_taxon", "resolve_taxa"));
    expect(registry.suggest("completely_different")).toBeUndefined();
  });

  it("refuses a task file that does not export a task, naming the file", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-tasks-"));
    try {
      await writeFile(path.join(dir, "broken_task.ts"), "export default { run: 1 };\n");
      await expect(loadRegistry(dir)).rejects.toThrow(/broken_task\.ts: the default export must be defineTask/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses a definition that names another task than its file (its job keys and fan-out would name that one)", () => {
    const definition = { name: "refresh_thumbnails", description: "x", payload: { type: "object" }, async run() {} };
    expect(() => registerTask("sync_thumbnails", definition, "tasks/sync_thumbnails.ts")).toThrow(
      "tasks/sync_thumbnails.ts: the definition names itself 'refresh_thumbnails', but its file makes it task 'sync_thumbnails'",
    );
    expect(registerTask("refresh_thumbnails", definition).name).toBe("refresh_thumbnails");
  });

  it("refuses task names that are not snake_case", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-tasks-"));
    try {
      const source = `import { defineTask } from ${JSON.stringify(path.join(PROJECT_ROOT, "src/task.ts"))};
export default defineTask({ description: "x", payload: { type: "object" }, async run() {} });\n`;
      await writeFile(path.join(dir, "ResolveTaxa.ts"), source);
      await expect(loadRegistry(dir)).rejects.toThrow(/task names are snake_case/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
