/**
 * scripts/bundle-dependencies.ts, the last step of `npm run build`: the single-file copies it writes
 * under dist/node_modules/ must be drop-in replacements of the installed packages for the code under
 * dist/ (same version, same subpaths, one set of classes shared by a package's subpaths), and Node's
 * own resolution must pick them for that code.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type * as installedValue from "typebox/value";
import { BUNDLED_DEPENDENCIES, bundleDependencies, runtimeSubpaths } from "../../scripts/bundle-dependencies.ts";

const root = path.resolve(import.meta.dirname, "../..");
let out: string;

beforeAll(async () => {
  out = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-bundles-"));
  await bundleDependencies(root, out);
}, 60_000);

afterAll(async () => {
  await rm(out, { recursive: true, force: true });
});

async function manifest(folder: string) {
  return JSON.parse(await readFile(path.join(folder, "package.json"), "utf8")) as { name: string; version: string; exports: Record<string, unknown> };
}

/** Imports `specifier` as a module placed at out/src/probe-N.mjs would, the way dist/src/*.js does. */
let probes = 0;
async function importFromBuild(specifier: string): Promise<Record<string, unknown>> {
  const probe = path.join(out, "src", `probe-${probes++}.mjs`);
  await mkdir(path.dirname(probe), { recursive: true });
  await writeFile(probe, `export * from ${JSON.stringify(specifier)};\nexport const resolved = import.meta.resolve(${JSON.stringify(specifier)});\n`);
  return (await import(pathToFileURL(probe).href)) as Record<string, unknown>;
}

describe("the build's single-file copies of dependencies", () => {
  test.each(BUNDLED_DEPENDENCIES)("%s: same name and version as installed, and every subpath it exports", async (name) => {
    const installed = await manifest(path.join(root, "node_modules", name));
    const copy = await manifest(path.join(out, "node_modules", name));
    expect(copy).toMatchObject({ name, version: installed.version, type: "module" });
    expect(Object.keys(copy.exports).sort()).toEqual(runtimeSubpaths(installed).map(({ subpath }) => subpath).sort());
  });

  test("code under the build folder resolves them before the installed packages, subpaths included", async () => {
    for (const specifier of ["kysely", "kysely/migration", "typebox", "typebox/value"]) {
      const { resolved } = await importFromBuild(specifier);
      expect(String(resolved)).toMatch(new RegExp(`^${pathToFileURL(path.join(out, "node_modules")).href}/`));
    }
  });

  test("kysely's root and its migration subpath share one copy of the code, and compile what the installed kysely compiles", async () => {
    const kysely = await importFromBuild("kysely");
    const migration = await importFromBuild("kysely/migration");
    expect(migration.Migrator).toBeTypeOf("function");
    // The migrator uses the root's WithSchemaPlugin: split into a shared chunk, it is defined once.
    const folder = path.join(out, "node_modules", "kysely");
    const files = (await readdir(folder, { recursive: true })).filter((file) => file.endsWith(".js"));
    const defining = [];
    for (const file of files) if (/\b(class WithSchemaPlugin|WithSchemaPlugin = class)\b/.test(await readFile(path.join(folder, file), "utf8"))) defining.push(file);
    expect(defining).toHaveLength(1);
    expect(kysely.WithSchemaPlugin).toBeTypeOf("function");
    const installed = await import("kysely");
    type Dialect = ConstructorParameters<typeof installed.Kysely>[0]["dialect"];
    const compile = (k: typeof installed) => {
      const dialect: Dialect = {
        createAdapter: () => new k.PostgresAdapter(),
        createDriver: () => new k.DummyDriver(),
        createIntrospector: (db) => new k.PostgresIntrospector(db),
        createQueryCompiler: () => new k.PostgresQueryCompiler(),
      };
      const db = new k.Kysely<{ jobs: { id: string; attempts: number } }>({ dialect });
      return db.selectFrom("jobs").select(["id", k.sql<number>`attempts + 1`.as("next")]).where(k.sql<boolean>`id = any(${["1", "2"]})`).compile();
    };
    const fromCopy = compile(kysely as unknown as typeof installed);
    expect(fromCopy.sql).toBe(compile(installed).sql);
    expect(fromCopy.parameters).toEqual([["1", "2"]]);
  });

  test("typebox's copy builds the schemas the installed typebox builds, and its value module checks them", async () => {
    const installed = await import("typebox");
    const typebox = (await importFromBuild("typebox")) as unknown as typeof installed;
    const value = (await importFromBuild("typebox/value")) as unknown as typeof installedValue;
    const schema = (t: typeof installed.Type) => t.Object({ taxonIds: t.Array(t.Integer({ minimum: 1 }), { maxItems: 3 }), force: t.Optional(t.Boolean()) });
    expect(schema(typebox.Type)).toEqual(schema(installed.Type));
    expect(value.Value.Check(schema(typebox.Type), { taxonIds: [1, 2] })).toBe(true);
    expect(value.Value.Check(schema(typebox.Type), { taxonIds: [0] })).toBe(false);
  });
});
