/**
 * README.md's "Layout" section, kept true to the tree (issue 18): every path it names exists, and
 * every folder of src/ (two levels deep) and every module directly in src/ is named in it.
 */
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, test } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");

async function layoutBlock(): Promise<string> {
  const readme = await readFile(path.join(root, "README.md"), "utf8");
  const block = /^## Layout\n+```\n([\s\S]*?)\n```/m.exec(readme)?.[1];
  if (!block) throw new Error("README.md has no ```-fenced block under '## Layout'");
  return block;
}

describe("README.md's layout", () => {
  test("names only paths that exist", async () => {
    const named = [...(await layoutBlock()).matchAll(/(?<![\w./-])((?:src|test|bench|scripts|bin|deploy|terraform|tasks)\/[\w./-]*[\w/])/g)].map((match) => match[1]!);
    expect(named.length).toBeGreaterThan(20);
    // `tasks/<task>.ts` is a pattern, not a path.
    const missing = named.filter((name) => !name.includes("<") && !existsSync(path.join(root, name)));
    expect(missing).toEqual([]);
  });

  test("names every folder of src/ and every module directly in src/", async () => {
    const block = await layoutBlock();
    const entries = await readdir(path.join(root, "src"), { withFileTypes: true, recursive: true });
    const expected = entries
      .map((entry) => ({ entry, relative: path.relative(root, path.join(entry.parentPath, entry.name)) }))
      .filter(({ entry, relative }) => (entry.isDirectory() ? relative.split(path.sep).length <= 3 : relative.split(path.sep).length === 2 && entry.name.endsWith(".ts")));
    // A module directly in src/ may be named by its file name in another one's row ("; payload-validation.ts …"),
    // a folder inside a folder of src/ by its name in that folder's row ("migrations, tables (one file each)").
    const isNamed = ({ entry, relative }: (typeof expected)[number]) =>
      entry.isDirectory()
        ? block.includes(`${relative}/`) || (relative.split(path.sep).length === 3 && new RegExp(`\\b${entry.name}\\b`).test(block))
        : block.includes(relative) || block.includes(entry.name);
    const unnamed = expected.filter((item) => !isNamed(item)).map(({ relative }) => relative);
    expect(unnamed).toEqual([]);
  });
});
