/**
 * 5. Footprint, measured on what the image runs. The service is compiled first (`npm run build`) and
 * started with the arguments of the Dockerfile's CMD (bench/lib/image-command.ts: `node
 * --min-semi-space-size=4 --max-semi-space-size=4 --enable-source-maps --import
 * ./dist/src/observability/instrumentation.js dist/src/main.js`), NODE_ENV=production, the required production settings and a migrated external
 * database; raw graphile-worker is bench/subject.ts.
 *
 * - Cold start: spawn to the first 200 from /readyz (raw: spawn to `run()` having resolved); the
 *   service once without tracing and once with an OTLP exporter configured (a local collector that
 *   accepts and drops every export).
 *   Also the CPU time (user + system, all threads) the process had used when it was ready: on a
 *   shared machine the wall-clock figure moves with the other work, the CPU figure far less.
 * - Idle RSS: each process's resident memory after it has been idle for a while once ready.
 * - Production install: `npm ci --omit=dev --omit=optional` of package.json and package-lock.json in
 *   a temporary folder (what the image installs), against `npm install graphile-worker` alone.
 */
import { execFile, spawn } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { projectRoot } from "../../src/config.ts";
import { API_TOKEN, subjectOptions, type BenchContext } from "../lib/context.ts";
import { freePort } from "../../test/helpers/ports.ts";
import type { Measure } from "../lib/report.ts";
import { IMAGE_NODE_ARGS } from "../lib/image-command.ts";
import { SubjectProcess } from "../lib/subject-process.ts";
import type { Stats } from "../subject.ts";

const SCENARIO = "5. Footprint";
const READY_TIMEOUT_MS = 120_000;
const run = promisify(execFile);

type Variant = "raw" | "service" | "traced";

interface Started {
  readyMs: number;
  /** CPU time used by then. */
  cpuMs: number;
  rssMb: number;
}

export async function footprint(context: BenchContext): Promise<Measure[]> {
  const { plan, server } = context;
  context.log("footprint: npm run build (the image's compiled entry point)");
  await run("npm", ["run", "build"], { cwd: projectRoot, env: npmEnvironment() });
  const collector = await startSinkCollector();
  const rawDatabase = await server.clone("footprint_raw", "raw");
  const serviceDatabase = await server.clone("footprint_service", "service");
  const ready: Record<Variant, number[]> = { raw: [], service: [], traced: [] };
  const cpu: Record<Variant, number[]> = { raw: [], service: [], traced: [] };
  const rss: Record<Variant, number[]> = { raw: [], service: [], traced: [] };
  try {
    for (let round = 0; round < plan.coldStartRounds; round++) {
      const order: Variant[] = ["raw", "service", "traced"];
      // Rotated every round, so drift on a shared machine hits every variant alike.
      for (const variant of [...order.slice(round % 3), ...order.slice(0, round % 3)]) {
        const started = variant === "raw" ? await startRaw(context, rawDatabase) : await startEntryPoint(context, serviceDatabase.url, variant === "traced" ? collector.url : null);
        ready[variant].push(started.readyMs);
        cpu[variant].push(started.cpuMs);
        rss[variant].push(started.rssMb);
        context.log(`footprint round ${round + 1} ${variant}: ready in ${Math.round(started.readyMs)} ms (${Math.round(started.cpuMs)} ms CPU), idle RSS ${Math.round(started.rssMb)} MB`);
      }
    }
  } finally {
    await server.drop(rawDatabase);
    await server.drop(serviceDatabase);
    await collector.close();
  }
  const install = { raw: await installedSize("raw"), service: await installedSize("service") };
  context.log(`footprint install: raw ${install.raw.toFixed(1)} MB, service ${install.service.toFixed(1)} MB`);
  const idleSeconds = plan.footprintIdleMs / 1000;
  return [
    { id: "footprint.coldStart", scenario: SCENARIO, label: "cold start to ready, compiled entry point", unit: "ms", raw: ready.raw, service: ready.service, target: { kind: "at-most", value: 1000 } },
    {
      id: "footprint.coldStartTraced",
      scenario: SCENARIO,
      label: "cold start to ready, OTLP exporter configured (raw: untraced)",
      unit: "ms",
      raw: ready.raw,
      service: ready.traced,
      target: { kind: "at-most", value: 1500 },
    },
    { id: "footprint.coldStartCpu", scenario: SCENARIO, label: "CPU time used when ready, compiled entry point", unit: "ms", raw: cpu.raw, service: cpu.service, target: null },
    { id: "footprint.coldStartCpuTraced", scenario: SCENARIO, label: "CPU time used when ready, OTLP exporter configured (raw: untraced)", unit: "ms", raw: cpu.raw, service: cpu.traced, target: null },
    { id: "footprint.rssIdleEntryPoint", scenario: SCENARIO, label: `RSS idle, ${idleSeconds} s after ready`, unit: "MB", raw: rss.raw, service: rss.service, target: { kind: "at-most", value: 120 } },
    { id: "footprint.rssIdleTraced", scenario: SCENARIO, label: `RSS idle, ${idleSeconds} s after ready, OTLP exporter configured`, unit: "MB", raw: rss.raw, service: rss.traced, target: null },
    {
      id: "footprint.install",
      scenario: SCENARIO,
      label: "production install (npm ci --omit=dev --omit=optional; raw: graphile-worker alone)",
      unit: "MB",
      raw: [install.raw],
      service: [install.service],
      target: { kind: "at-most", value: 80 },
    },
  ];
}

async function startRaw(context: BenchContext, database: { name: string; url: string }): Promise<Started> {
  const began = performance.now();
  const subject = await SubjectProcess.start(subjectOptions(context.plan, "raw", database));
  const readyMs = performance.now() - began;
  try {
    const cpuMs = await cpuMilliseconds(subject.child.pid!);
    await new Promise((resolve) => setTimeout(resolve, context.plan.footprintIdleMs));
    const { rss } = await subject.request<Stats>({ cmd: "stats" });
    return { readyMs, cpuMs, rssMb: rss / 2 ** 20 };
  } finally {
    await subject.stop();
  }
}

async function startEntryPoint(context: BenchContext, databaseUrl: string, otlpEndpoint: string | null): Promise<Started> {
  const port = await freePort();
  const began = performance.now();
  const child = spawn(process.execPath, IMAGE_NODE_ARGS, {
    cwd: projectRoot,
    env: {
      PATH: process.env.PATH,
      NODE_ENV: "production",
      DATABASE_URL: databaseUrl,
      API_TOKENS: API_TOKEN,
      DASHBOARD_SESSION_SECRET: "bench-dashboard-session-secret-0123456789",
      HOST: "127.0.0.1",
      PORT: String(port),
      ...(otlpEndpoint ? { OTEL_EXPORTER_OTLP_ENDPOINT: otlpEndpoint } : {}),
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the service exited (${child.exitCode}) before it was ready: ${stderr}`);
      if (performance.now() - began > READY_TIMEOUT_MS) throw new Error(`the service was not ready within ${READY_TIMEOUT_MS} ms`);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (response) => response.status === 200,
        () => false,
      );
      if (ready) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const readyMs = performance.now() - began;
    const cpuMs = await cpuMilliseconds(child.pid!);
    await new Promise((resolve) => setTimeout(resolve, context.plan.footprintIdleMs));
    return { readyMs, cpuMs, rssMb: await residentMegabytes(child.pid!) };
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

/** Resident set size of another process (ps reports KiB, on Linux and macOS alike). */
async function residentMegabytes(pid: number): Promise<number> {
  const { stdout } = await run("ps", ["-o", "rss=", "-p", String(pid)]);
  return Number(stdout.trim()) / 1024;
}

/**
 * CPU time (user + system) another process has used: /proc/<pid>/stat on Linux (fields 14 and 15,
 * in clock ticks of 1/100 s), `ps -o time=` (whole seconds) elsewhere.
 */
async function cpuMilliseconds(pid: number): Promise<number> {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    const { stdout } = await run("ps", ["-o", "time=", "-p", String(pid)]);
    return stdout.trim().split(":").reduce((total, part) => total * 60 + Number(part), 0) * 1000;
  }
}

/** The production dependencies as the image installs them, in a temporary folder; MB on disk. */
async function installedSize(system: "raw" | "service"): Promise<number> {
  const folder = await mkdtemp(path.join(os.tmpdir(), `observing-jobs-install-${system}-`));
  try {
    const flags = ["--omit=dev", "--omit=optional", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"];
    if (system === "service") {
      await copyFile(path.join(projectRoot, "package.json"), path.join(folder, "package.json"));
      await copyFile(path.join(projectRoot, "package-lock.json"), path.join(folder, "package-lock.json"));
      await run("npm", ["ci", ...flags], { cwd: folder, env: npmEnvironment() });
    } else {
      // graphile-worker at the version the service runs, and nothing else.
      const { version } = JSON.parse(await readFile(path.join(projectRoot, "node_modules/graphile-worker/package.json"), "utf8")) as { version: string };
      await writeFile(path.join(folder, "package.json"), JSON.stringify({ name: "raw-graphile-worker", private: true, dependencies: { "graphile-worker": version } }));
      await run("npm", ["install", "--no-package-lock", ...flags], { cwd: folder, env: npmEnvironment() });
    }
    const { stdout } = await run("du", ["-sk", path.join(folder, "node_modules")]);
    return Number(stdout.split(/\s/)[0]) / 1024;
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

/** npm from the Node that runs the benchmark (the machine's default node may be older). */
function npmEnvironment(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}` };
}

/** An OTLP/HTTP endpoint that accepts every export and keeps nothing. */
async function startSinkCollector(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
