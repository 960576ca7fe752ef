/**
 * An unsupported Node says so in one line before anything else, for every entry point a newcomer
 * runs: the npm scripts and the CLI launcher.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT, runToCompletion } from "./helpers/service-process.ts";

const MESSAGE = "observing-jobs needs Node >= 22.18, found v20.20.2; see .nvmrc\n";
const PRETEND_NODE_20 = "./test/fixtures/pretend-node-20.cjs";
const scripts = (JSON.parse(readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
// Scripts that start the project's own code (lint, typecheck and build run tools that check their own Node).
const NODE_SCRIPTS = ["start", "demo", "test", "test:watch", "cli", "migrate", "bench", "chaos", "drain-check"];

describe("on a Node older than 22.18", () => {
  it.each(NODE_SCRIPTS)("npm run %s loads the version check before any .ts file", async (name) => {
    const [command, ...args] = scripts[name]!.split(" ");
    expect(command).toBe("node");
    expect(args.slice(0, 2)).toEqual(["--require", "./bin/check-node.cjs"]);
    const result = await runToCompletion(["--require", PRETEND_NODE_20, ...args], {});
    expect(result).toEqual({ code: 1, stdout: "", stderr: MESSAGE });
  });

  it("the CLI launcher prints the one line and exits 1", async () => {
    const result = await runToCompletion(["--require", PRETEND_NODE_20, "bin/observing-jobs.js", "add", "resolve_taxa"], {});
    expect(result).toEqual({ code: 1, stdout: "", stderr: MESSAGE });
  });

  const oldNode = olderNodeOnPath();
  it.skipIf(!oldNode)(`the machine's own older Node (${oldNode ?? "none on PATH"}) gets the same line`, async () => {
    const result = await runToCompletion(["--require", "./bin/check-node.cjs", "--import", "./src/observability/instrumentation.ts", "src/main.ts"], {}, oldNode!);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^observing-jobs needs Node >= 22\.18, found v\d+\.\d+\.\d+; see \.nvmrc\n$/);
  });
});

it("a supported Node passes the check", async () => {
  const result = await runToCompletion(["--require", "./bin/check-node.cjs", "-e", "process.stdout.write('ran')"], {});
  expect(result).toEqual({ code: 0, stdout: "ran", stderr: "" });
});

/** A `node` on PATH older than 22.18, as on machines whose default Node is 20. */
function olderNodeOnPath(): string | undefined {
  let candidates: string[];
  try {
    candidates = execFileSync("which", ["-a", "node"], { encoding: "utf8" }).split("\n").filter(Boolean);
  } catch {
    return undefined; // no `which`: nothing to compare against
  }
  for (const candidate of candidates) {
    const version = execFileSync(candidate, ["-p", "process.versions.node"], { encoding: "utf8" }).trim();
    const [major, minor] = version.split(".").map(Number) as [number, number];
    if (major < 22 || (major === 22 && minor < 18)) return candidate;
  }
  return undefined;
}
