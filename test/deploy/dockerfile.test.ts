import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { finalStage, parseDockerfile, readDockerfile, stageEnvironment, type DockerStage } from "../helpers/dockerfile.ts";

const root = path.resolve(import.meta.dirname, "../..");
const parsed = await readDockerfile();
const runtime = finalStage(parsed);
const keywords = (stage: DockerStage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);

describe("the Dockerfile", () => {
  test("is a multi-stage build on an official Node 24 slim image pinned to a release", () => {
    expect(parsed.stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of parsed.stages) expect(stage.image).toMatch(/^node:24\.\d+\.\d+-[a-z]+-slim(@sha256:[0-9a-f]{64})?$/);
    expect(parsed.stages[0]!.name).toBe("build");
  });

  test("builds with npm ci from the lockfile and npm run build in the build stage", () => {
    const build = parsed.stages[0]!;
    const runs = keywords(build, "RUN").map((i) => i.text);
    expect(runs.some((run) => /^npm ci\b/.test(run))).toBe(true);
    expect(runs).toContain("npm run build");
  });

  test("keeps npm's download cache out of the image: every npm ci runs with a cache mount", () => {
    for (const stage of parsed.stages) {
      for (const run of keywords(stage, "RUN").filter((i) => /\bnpm ci\b/.test(i.text))) {
        expect(run.flags.mount, run.text).toMatch(/^type=cache,target=\/root\/\.npm$/);
        expect(run.text).not.toMatch(/npm cache/);
      }
    }
  });

  test("installs production dependencies only in the final stage, from the lockfile", () => {
    const install = keywords(runtime, "RUN").find((i) => /\bnpm ci\b/.test(i.text));
    expect(install?.text).toMatch(/npm ci\b.*--omit=dev/);
    expect(keywords(runtime, "COPY").flatMap((i) => i.args)).toContain("package-lock.json");
  });

  test("the final stage carries the built service and tasks, the CLI entry and the crontab, not the sources", () => {
    const copies = keywords(runtime, "COPY");
    const fromBuild = copies.filter((copy) => copy.flags.from === "build").flatMap((copy) => copy.args.slice(0, -1));
    expect(fromBuild).toContain("/app/dist");
    const fromContext = copies.filter((copy) => !copy.flags.from).flatMap((copy) => copy.args.slice(0, -1));
    expect(fromContext).toEqual(expect.arrayContaining(["crontab", "bin", "package.json"]));
    expect(fromContext).not.toContain("src");
    expect(fromContext).not.toContain("tasks");
  });

  test("runs production configuration as a non-root user", () => {
    expect(stageEnvironment(runtime).NODE_ENV).toBe("production");
    const users = keywords(runtime, "USER");
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)!.args[0]).not.toMatch(/^(root|0)(:|$)/);
    // Nothing after USER may switch back to root.
    const last = runtime.instructions.findLastIndex((i) => i.keyword === "USER");
    expect(runtime.instructions.slice(last + 1).map((i) => i.keyword)).not.toContain("RUN");
  });

  test("starts node directly in exec form, so SIGTERM reaches the service", () => {
    expect(keywords(runtime, "ENTRYPOINT")).toEqual([]);
    const cmd = keywords(runtime, "CMD").at(-1);
    expect(cmd?.execForm?.[0]).toBe("node");
    expect(cmd!.execForm!.at(-1)).toBe("dist/src/main.js");
    // OpenTelemetry must load before the service's own modules.
    expect(cmd!.execForm!.join(" ")).toContain("--import ./dist/src/observability/instrumentation.js dist/src/main.js");
  });

  test("fixes V8's young generation, and npm start runs with the same size", async () => {
    const cmd = keywords(runtime, "CMD").at(-1)!.execForm!;
    const heapFlags = cmd.filter((arg) => /^--(min|max)-semi-space-size=/.test(arg));
    // A cap (memory after a drain) and a floor (the start-up collection must not leave it at its minimum).
    expect(heapFlags).toEqual([expect.stringMatching(/^--min-semi-space-size=\d+$/), expect.stringMatching(/^--max-semi-space-size=\d+$/)]);
    const { scripts } = JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(scripts.start!.split(" ")).toEqual(expect.arrayContaining(heapFlags));
  });

  test("the invariants catch a shell-form CMD and a root user", () => {
    const bad = parseDockerfile("FROM node:24.21.0-bookworm-slim\nUSER root\nCMD npm start\n");
    const stage = finalStage(bad);
    expect(keywords(stage, "CMD")[0]!.execForm).toBeNull();
    expect(keywords(stage, "USER")[0]!.args[0]).toBe("root");
  });

  test(".dockerignore keeps dependencies, builds and secrets out of the context but not what the Dockerfile copies", async () => {
    const ignored = (await readFile(path.join(root, ".dockerignore"), "utf8"))
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith("#"));
    expect(ignored).toEqual(expect.arrayContaining(["node_modules", "dist", ".git", ".data", ".env*"]));
    const copied = parsed.stages
      .flatMap((stage) => keywords(stage, "COPY"))
      .filter((copy) => !copy.flags.from)
      .flatMap((copy) => copy.args.slice(0, -1));
    for (const source of copied) {
      expect(ignored.filter((pattern) => path.matchesGlob(source, pattern)), source).toEqual([]);
    }
  });
});
