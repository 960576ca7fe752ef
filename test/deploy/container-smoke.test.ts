/**
 * No Docker engine runs here, so this replays the Dockerfile's stages in temporary directories:
 * every COPY, WORKDIR, ENV and RUN as the parsed Dockerfile says (a stage's "/" is a directory),
 * then the pre-deploy migration and the image's CMD against a fresh, empty database. An
 * instruction the replay does not know fails the test rather than being skipped.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { cp, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { withDatabase } from "../global-setup.ts";
import { readDockerfile, stageEnvironment, type DockerStage } from "../helpers/dockerfile.ts";
import { waitFor } from "../helpers/env.ts";
import { builderEnvironment, MIGRATE_COMMAND } from "../helpers/image.ts";
import { BUNDLED_DEPENDENCIES } from "../../scripts/bundle-dependencies.ts";

const root = path.resolve(import.meta.dirname, "../..");
/** Instructions that only describe the container to its runtime; the replay has nothing to do for them. */
const METADATA = new Set(["ARG", "EXPOSE", "USER", "LABEL", "STOPSIGNAL"]);

interface ReplayedStage {
  /** The directory standing for the stage's "/". */
  fsRoot: string;
  workdir: string;
  env: Record<string, string>;
  cmd: string[] | null;
}

let scratch: string;
let databaseName: string;
let databaseUrl: string;
const adminUrl = inject("adminDatabaseUrl");

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-image-"));
  databaseName = `observing_jobs_smoke_${randomBytes(6).toString("hex")}`;
  await admin(`create database ${databaseName}`);
  databaseUrl = withDatabase(adminUrl, databaseName);
});

afterAll(async () => {
  await admin(`drop database if exists ${databaseName} with (force)`);
  await rm(scratch, { recursive: true, force: true });
});

describe("the container image, replayed without Docker", () => {
  test("builds, migrates an empty database, answers /readyz and exits 0 on SIGTERM", { timeout: 180_000 }, async () => {
    const dockerfile = await readDockerfile();
    const stages = new Map<string, ReplayedStage>();
    let image: ReplayedStage | undefined;
    for (const [index, stage] of dockerfile.stages.entries()) {
      image = await replayStage(stage, path.join(scratch, `stage-${index}`), stages);
      if (stage.name) stages.set(stage.name, image);
    }
    const cwd = path.join(image!.fsRoot, image!.workdir);
    // The image holds the build output and production dependencies, never the TypeScript sources.
    await expect(stat(path.join(cwd, "src"))).rejects.toThrow();
    await expect(stat(path.join(cwd, "node_modules", "typescript"))).rejects.toThrow();
    // The build's single-file copies (scripts/bundle-dependencies.ts) are what the image's code loads.
    for (const name of BUNDLED_DEPENDENCIES) {
      const resolve = ["node", "--input-type=module", "-e", `process.stdout.write(import.meta.resolve(${JSON.stringify(name)}))`];
      const resolved = await runToEnd(resolve, { cwd: path.join(cwd, "dist/src"), env: { PATH: builderEnvironment().PATH } });
      expect(resolved.stdout, resolved.stderr).toBe(pathToFileURL(path.join(cwd, "dist/node_modules", name, "index.js")).href);
    }

    // The container's environment is the image's ENV plus what Cloud Run and the deployment set.
    const env = {
      PATH: builderEnvironment().PATH,
      HOME: os.tmpdir(),
      ...image!.env,
      DATABASE_URL: databaseUrl,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_FORMAT: "json",
      API_TOKENS: "smoke-test-token-0123456789",
      DASHBOARD_SESSION_SECRET: "smoke-test-dashboard-session-secret-0123",
    };
    const migrate = await runToEnd(MIGRATE_COMMAND, { cwd, env });
    expect(migrate.stderr, migrate.stderr).not.toMatch(/"level":[56]0/);
    expect(migrate).toMatchObject({ code: 0, stdout: "migrations applied\n" });

    expect(image!.cmd).not.toBeNull();
    const service = startProcess(image!.cmd!, { cwd, env });
    try {
      const started = await waitFor(
        () => {
          if (service.child.exitCode !== null) throw new Error(`the service exited (${service.child.exitCode}):\n${service.output()}`);
          return service.lines().find((line) => line.message === "observing-jobs is running");
        },
        { timeoutMs: 30_000, message: "the service to start" },
      );
      expect(started).toMatchObject({
        tasks: expect.arrayContaining(["resolve_taxa", "prune_job_history"]),
        cron: expect.arrayContaining(["resolve_taxa_nightly"]),
      });
      // The replay connects as the test server's superuser, which the service must call out.
      const warnings = service.lines().filter((line) => line.level === 40).map((line) => String(line.message));
      expect(warnings).toEqual(expect.arrayContaining([expect.stringMatching(/more privilege than it needs \(connected as superuser/)]));
      const url = String(started.url);
      await waitFor(
        async () => {
          const response = await fetch(`${url}/readyz`).catch(() => undefined);
          return response?.status === 200;
        },
        { timeoutMs: 20_000, message: "/readyz to answer 200" },
      );
      service.child.kill("SIGTERM");
      expect(await service.exited).toBe(0);
      expect(service.lines().map((line) => line.message)).toContain("shut down cleanly");
    } finally {
      if (service.child.exitCode === null) service.child.kill("SIGKILL");
    }
  });
});

async function replayStage(stage: DockerStage, fsRoot: string, earlier: Map<string, ReplayedStage>): Promise<ReplayedStage> {
  const replayed: ReplayedStage = { fsRoot, workdir: "/", env: {}, cmd: null };
  await mkdir(fsRoot, { recursive: true });
  for (const instruction of stage.instructions) {
    const inside = (target: string) => path.join(fsRoot, path.posix.resolve(replayed.workdir, target));
    switch (instruction.keyword) {
      case "WORKDIR":
        replayed.workdir = path.posix.resolve(replayed.workdir, instruction.args[0]!);
        await mkdir(inside("."), { recursive: true });
        break;
      case "ENV":
        Object.assign(replayed.env, stageEnvironment({ ...stage, instructions: [instruction] }));
        break;
      case "COPY": {
        const from = instruction.flags.from;
        const source = from ? earlier.get(from) : undefined;
        if (from && !source) throw new Error(`COPY --from=${from}: no such stage`);
        const sources = instruction.args.slice(0, -1);
        const destination = instruction.args.at(-1)!;
        for (const item of sources) {
          const origin = source ? path.join(source.fsRoot, item) : path.join(root, item);
          const isDirectory = (await stat(origin)).isDirectory();
          const target = !isDirectory && destination.endsWith("/") ? path.join(inside(destination), path.basename(item)) : inside(destination);
          await cp(origin, target, { recursive: true });
        }
        break;
      }
      case "RUN": {
        // A cache mount is the builder's persistent cache; for npm's, that is this machine's npm cache,
        // which holds the lockfile's packages, so the installs need no registry round trips.
        const mount = instruction.flags.mount;
        if (mount !== undefined && mount !== "type=cache,target=/root/.npm") throw new Error(`the replay does not know RUN --mount=${mount}`);
        // Commands run on this machine, not in a container: only npm's, which stay inside the stage's folder.
        if (!/^npm (ci|run [\w:-]+)( --[\w=-]+)*$/.test(instruction.text)) throw new Error(`the replay does not run RUN ${instruction.text}; teach it`);
        const result = await runToEnd(["sh", "-c", instruction.text], {
          cwd: inside("."),
          env: { ...builderEnvironment(), ...replayed.env, npm_config_prefer_offline: "true", npm_config_update_notifier: "false" },
        });
        if (result.code !== 0) throw new Error(`RUN ${instruction.text} failed (${result.code}):\n${result.stdout}\n${result.stderr}`);
        break;
      }
      case "CMD":
        replayed.cmd = instruction.execForm;
        break;
      default:
        if (!METADATA.has(instruction.keyword)) throw new Error(`the replay does not know ${instruction.keyword}; teach it`);
    }
  }
  return replayed;
}

interface RunningProcess {
  child: ChildProcess;
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  output(): string;
  /** The JSON log lines written to stdout so far. */
  lines(): Array<Record<string, unknown>>;
}

function startProcess(command: readonly string[], options: { cwd: string; env: Record<string, string | undefined> }): RunningProcess {
  const child = spawn(command[0]!, command.slice(1), { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    output: () => `${stdout}\n${stderr}`,
    lines: () =>
      stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

async function runToEnd(command: readonly string[], options: { cwd: string; env: Record<string, string | undefined> }) {
  const running = startProcess(command, options);
  const code = await running.exited;
  return { code, stdout: running.stdout(), stderr: running.stderr() };
}

async function admin(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
