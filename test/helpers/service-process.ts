/**
 * Runs the real service (or CLI) as a child process, the way Cloud Run and operators do, and
 * collects what it prints. Used where signals, exit codes and start-up failures are the point.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { waitFor } from "./env.ts";
import { freePort } from "./ports.ts";

export { freePort };

export const PROJECT_ROOT = path.resolve(import.meta.dirname, "../..");

export interface ChildService {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>;
  /** Where the service listens, read from its start-up line (it binds a port the kernel picks). */
  readonly baseUrl: string;
  /** Polls until `path` answers with `status` or the deadline passes. */
  waitForStatus(path: string, status: number, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
  /** Sends the signal to the child's whole process group, as a terminal's Ctrl-C does (needs `ownProcessGroup`). */
  killGroup(signal: NodeJS.Signals): void;
}

/**
 * Children that lead their own process group do not get the Ctrl-C (or the SIGTERM of a cancelled
 * run) that ends this test process: they are sent SIGTERM themselves then, so that a killed test
 * run leaves no service (and no embedded PostgreSQL of one) behind.
 */
const ownGroups = new Set<number>();
let endingOwnGroupsOnExit = false;

function endOwnGroups(): void {
  for (const pid of ownGroups) {
    try {
      process.kill(-pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
}

function trackOwnGroup(child: ChildProcess): void {
  if (!endingOwnGroupsOnExit) {
    endingOwnGroupsOnExit = true;
    process.once("exit", endOwnGroups);
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      process.once(signal, () => {
        endOwnGroups();
        process.exit(code);
      });
    }
  }
  ownGroups.add(child.pid!);
  child.once("exit", () => ownGroups.delete(child.pid!));
}

/** The environment a child gets: nothing inherited that could point it elsewhere. */
function childEnvironment(env: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, ...env };
}

/**
 * Starts the service (or another entry point) with PORT=0, so the kernel picks a port no other test
 * file can take first, and learns it from the start-up line (JSON logs, as testEnvironment sets).
 */
export function startChild(args: string[], env: Record<string, string>, options: { ownProcessGroup?: boolean } = {}): ChildService {
  const child = spawn(process.execPath, args, {
    cwd: PROJECT_ROOT,
    env: childEnvironment({ ...env, PORT: "0" }),
    stdio: ["ignore", "pipe", "pipe"],
    // The child leads a process group of its own, like a command a terminal's shell runs.
    detached: options.ownProcessGroup ?? false,
  });
  if (options.ownProcessGroup) trackOwnGroup(child);
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  const listening = () => /"url":"(http:\/\/[^"]+)"[^\n]*"message":"observing-jobs is running"/.exec(output)?.[1];
  return {
    child,
    output: () => output,
    exited,
    get baseUrl() {
      const url = listening();
      if (!url) throw new Error("the service has not said where it listens yet: wait for a status first");
      return url;
    },
    async waitForStatus(route, status, timeoutMs = 30_000) {
      let exitedEarly = false;
      void exited.then(() => (exitedEarly = true));
      await waitFor(
        async () => {
          if (exitedEarly) throw new Error(`the process exited while waiting for ${route}:\n${output}`);
          const url = listening();
          if (!url) return false;
          try {
            return (await fetch(`${url}${route}`)).status === status;
          } catch {
            return false;
          }
        },
        { timeoutMs, message: `${route} to answer ${status}` },
      );
    },
    kill: (signal = "SIGTERM") => void child.kill(signal),
    killGroup(signal) {
      if (!options.ownProcessGroup) throw new Error("killGroup needs a child started with ownProcessGroup");
      process.kill(-child.pid!, signal);
    },
  };
}

/** Runs a command (with this Node, unless another is given) to completion and returns its exit code and output. */
export async function runToCompletion(
  args: string[],
  env: Record<string, string>,
  node = process.execPath,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const child = spawn(node, args, { cwd: PROJECT_ROOT, env: childEnvironment(env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | string>((resolve) => child.once("exit", (c, signal) => resolve(c ?? signal ?? -1)));
  return { code, stdout, stderr };
}
