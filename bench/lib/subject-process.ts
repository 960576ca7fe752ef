/**
 * The benchmark's side of bench/subject.ts: forks a system under test, waits until it is up, sends it
 * commands and stops it (killing it if it does not exit in time).
 */
import { fork, type ChildProcess } from "node:child_process";
import path from "node:path";
import type { Command, Ready, SubjectOptions } from "../subject.ts";
import { IMAGE_NODE_FLAGS } from "./image-command.ts";

const SUBJECT = path.join(import.meta.dirname, "../subject.ts");
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

export interface SpawnOptions {
  /** Write a CPU profile of the process into this folder (`node --cpu-prof`). */
  profileDir?: string;
  /** Let the subject's log lines through to this terminal. */
  verbose?: boolean;
}

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export class SubjectProcess {
  readonly child: ChildProcess;
  readonly options: SubjectOptions;
  url: string | null = null;
  /** Process start → system up, as measured inside the subject. */
  readyMs = 0;
  #nextId = 1;
  #pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  #stderr = "";
  #exited: Promise<number | null>;

  private constructor(options: SubjectOptions, spawn: SpawnOptions) {
    this.options = options;
    this.child = fork(SUBJECT, [], {
      env: { ...process.env, BENCH_SUBJECT: JSON.stringify(options) },
      // The service runs with the Node flags the image starts it with; raw graphile-worker with Node's defaults.
      execArgv: [...(options.system === "service" ? IMAGE_NODE_FLAGS : []), ...(spawn.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${spawn.profileDir}`] : [])],
      // Logs go nowhere (as fast as a log collector that keeps up); stderr is kept for error reports.
      stdio: ["ignore", spawn.verbose ? "inherit" : "ignore", "pipe", "ipc"],
    });
    this.child.stderr?.on("data", (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4000);
      if (spawn.verbose) process.stderr.write(chunk);
    });
    this.#exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
    this.child.on("message", (message: Reply | Ready) => {
      if ("event" in message) return;
      const pending = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (message.ok) pending?.resolve(message.result);
      else pending?.reject(new Error(`${options.system} subject: ${message.error}`));
    });
    void this.#exited.then((code) => {
      for (const pending of this.#pending.values()) pending.reject(new Error(`${options.system} subject exited (${code}): ${this.#stderr}`));
      this.#pending.clear();
    });
  }

  static async start(options: SubjectOptions, spawn: SpawnOptions = {}): Promise<SubjectProcess> {
    const subject = new SubjectProcess(options, spawn);
    try {
      const ready = await new Promise<Ready>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${options.system} subject did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
        subject.child.on("message", (message: Reply | Ready) => {
          if ("event" in message) {
            clearTimeout(timer);
            resolve(message);
          }
        });
        void subject.#exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`${options.system} subject exited (${code}) before it was ready: ${subject.#stderr}`));
        });
      });
      subject.url = ready.url;
      subject.readyMs = ready.readyMs;
      return subject;
    } catch (error) {
      await subject.kill();
      throw error;
    }
  }

  request<T>(command: Command): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.child.send({ ...command, id });
    });
  }

  /** Asks the system to stop (it drains and closes); kills it if it does not exit in time. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const timer = setTimeout(() => this.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    try {
      await Promise.race([this.request({ cmd: "stop" }).catch(() => {}), this.#exited]);
      await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGKILL");
    await this.#exited;
  }
}
