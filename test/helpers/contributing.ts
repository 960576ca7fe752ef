/**
 * CONTRIBUTING.md's worked example as files: the task file, its test and the crontab line, taken
 * from the page's fenced blocks and written where they would live in the repository (throwaway
 * folders one level below the root and below test/), so the page's relative imports resolve unchanged.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");

export interface ContributingExample {
  taskName: string;
  /** Folder holding only the example's task file, for loadRegistry(). */
  taskDirectory: string;
  taskFile: string;
  /** The page's test, named *.doc.ts so that vitest does not collect it on its own. */
  testFile: string;
  crontabLine: string;
  remove(): Promise<void>;
}

export async function writeContributingExample(): Promise<ContributingExample> {
  const markdown = await readFile(path.join(root, "CONTRIBUTING.md"), "utf8");
  const blocks = [...markdown.matchAll(/^```(\w+)(?: title="([^"]+)")?\n([\s\S]*?)^```$/gm)].map((match) => ({
    language: match[1]!,
    title: match[2],
    code: match[3]!,
  }));
  const task = blocks.find((block) => block.title?.startsWith("tasks/"));
  const test = blocks.find((block) => block.title?.startsWith("test/tasks/"));
  const crontabLine = blocks.find((block) => block.language === "crontab")?.code.trim();
  if (!task || !test || !crontabLine) throw new Error("CONTRIBUTING.md lost its task file, its test or its crontab block");

  const taskName = path.basename(task.title!, ".ts");
  const taskDirectory = await mkdtemp(path.join(root, ".contributing-tasks-"));
  const testDirectory = await mkdtemp(path.join(root, "test", ".contributing-"));
  const taskFile = path.join(taskDirectory, `${taskName}.ts`);
  const testFile = path.join(testDirectory, path.basename(test.title!).replace(/\.test\.ts$/, ".doc.ts"));
  await writeFile(taskFile, task.code);
  await writeFile(testFile, test.code);
  return {
    taskName,
    taskDirectory,
    taskFile,
    testFile,
    crontabLine,
    async remove() {
      await rm(taskDirectory, { recursive: true, force: true });
      await rm(testDirectory, { recursive: true, force: true });
    },
  };
}
