/**
 * The last step of `npm run build`: single-file copies of the two dependencies that load as hundreds
 * of small modules, in dist/node_modules/, where Node's resolution finds them first for every file
 * under dist/ (the service, the CLI and the tasks alike), before the installed package in
 * node_modules/. Nothing imports them by another name and no hook redirects anything: a bare
 * `import … from "kysely"` in dist/src/db/database.js walks up to dist/node_modules/kysely.
 *
 * Why: measured on the image's entry point (docs/BENCHMARKS.md, "Cold start"), `typebox` is 373
 * modules and `kysely` 257 of the 1,374 the service loads before it is ready, and Node's ESM loader
 * pays per module (resolve, stat, read, link): importing typebox takes ~120 ms, kysely ~130 ms, and
 * their bundles ~21 ms and ~28 ms. The other dependencies are either few files each, imported by
 * other packages (which resolve from node_modules/ and would load the installed copy as well), or
 * patched by the OpenTelemetry instrumentations by their installed path (pg), so they stay as they are.
 *
 * Every subpath a package exports is bundled (code splitting keeps what two subpaths share in one
 * chunk, so `kysely` and `kysely/migration` see the same classes) and the copy's package.json
 * exports the same subpaths, so any import the sources type-check against resolves. The copy is
 * built from the installed package at build time: same version, same code, no source maps (stack
 * traces show esbuild's readable, unminified output; a map would be parsed on every start under
 * --enable-source-maps). Sources run from src/ (npm start, the tests) load the installed packages.
 *
 * esbuild-wasm rather than esbuild: the Dockerfile's build stage installs without optional
 * dependencies, and esbuild's native binary is one.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { build } from "esbuild-wasm";

export const BUNDLED_DEPENDENCIES = ["typebox", "kysely"] as const;

interface PackageManifest {
  name: string;
  version: string;
  exports: Record<string, unknown>;
}

/** Bundles each of BUNDLED_DEPENDENCIES, as installed under `root`, into `<outDir>/node_modules/<name>/`. */
export async function bundleDependencies(root: string, outDir: string): Promise<void> {
  for (const name of BUNDLED_DEPENDENCIES) {
    const manifest = JSON.parse(await readFile(path.join(root, "node_modules", name, "package.json"), "utf8")) as PackageManifest;
    const entries = runtimeSubpaths(manifest);
    const target = path.join(outDir, "node_modules", name);
    await rm(target, { recursive: true, force: true });
    await build({
      absWorkingDir: root,
      entryPoints: Object.fromEntries(entries.map(({ subpath, entry }) => [entry, subpath === "." ? name : `${name}/${subpath.slice(2)}`])),
      outdir: target,
      bundle: true,
      splitting: true,
      format: "esm",
      platform: "node",
      target: "node22",
      chunkNames: "chunks/[name]-[hash]",
      legalComments: "eof",
      logLevel: "warning",
    });
    const copy = {
      name,
      version: manifest.version,
      description: `${name}@${manifest.version} bundled by scripts/bundle-dependencies.ts (npm run build) so it loads as a few modules instead of hundreds`,
      type: "module",
      sideEffects: false,
      exports: Object.fromEntries(entries.map(({ subpath, entry }) => [subpath, `./${entry}.js`])),
    };
    await writeFile(path.join(target, "package.json"), `${JSON.stringify(copy, null, 2)}\n`);
  }
}

/**
 * The subpaths of a package's exports map that resolve to code ("./package.json", type-only and
 * wildcard entries are left out), each with the name its bundle gets ("." is index).
 */
export function runtimeSubpaths(manifest: PackageManifest): Array<{ subpath: string; entry: string }> {
  const subpaths = Object.entries(manifest.exports)
    .filter(([subpath, target]) => subpath.startsWith(".") && !subpath.includes("*") && !subpath.endsWith(".json") && resolvesToCode(target))
    .map(([subpath]) => subpath);
  if (!subpaths.includes(".")) throw new Error(`${manifest.name} exports no "." entry point`);
  return subpaths.map((subpath) => ({ subpath, entry: subpath === "." ? "index" : subpath.slice(2) }));
}

function resolvesToCode(target: unknown): boolean {
  if (typeof target === "string") return !target.endsWith(".d.ts");
  return typeof target === "object" && target !== null && ["import", "node", "default"].some((condition) => condition in target);
}

if (import.meta.main) await bundleDependencies(path.resolve(import.meta.dirname, ".."), path.resolve(import.meta.dirname, "../dist"));
