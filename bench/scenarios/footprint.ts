/**
 * 5. Footprint: cold start to ready on an external (already migrated) database. The service is its
 * production entry point, `node src/main.ts` with NODE_ENV=production, timed from spawn to the
 * first 200 from /readyz; raw graphile-worker is bench/subject.ts, timed from spawn to `run()`
 * having resolved. Both load TypeScript through Node's type stripping (the image runs compiled JS).
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { projectRoot } from "../../src/config.ts";
import { API_TOKEN, subjectOptions, type BenchContext } from "../lib/context.ts";
import { freePort } from "../../test/helpers/ports.ts";
import type { Measure } from "../lib/report.ts";
import { SubjectProcess } from "../lib/subject-process.ts";

const SCENARIO = "5. Footprint";
const READY_TIMEOUT_MS = 30_000;

export async function coldStart(context: BenchContext): Promise<Measure> {
  const { plan, server } = context;
  const rawDatabase = await server.clone("cold_start_raw");
  const serviceDatabase = await server.clone("cold_start_service");
  const times = { raw: [] as number[], service: [] as number[] };
  try {
    for (let round = 0; round < plan.coldStartRounds; round++) {
      for (const system of round % 2 === 0 ? (["raw", "service"] as const) : (["service", "raw"] as const)) {
        const ms = system === "raw" ? await startRaw(context, rawDatabase) : await startService(serviceDatabase.url);
        times[system].push(ms);
        context.log(`cold start round ${round + 1} ${system}: ${Math.round(ms)} ms`);
      }
    }
  } finally {
    await server.drop(rawDatabase);
    await server.drop(serviceDatabase);
  }
  return {
    id: "footprint.coldStart",
    scenario: SCENARIO,
    label: "cold start to ready",
    unit: "ms",
    raw: times.raw,
    service: times.service,
    target: { kind: "at-most", value: 1000 },
  };
}

async function startRaw(context: BenchContext, database: { name: string; url: string }): Promise<number> {
  const began = performance.now();
  const subject = await SubjectProcess.start(subjectOptions(context.plan, "raw", database));
  const ms = performance.now() - began;
  await subject.stop();
  return ms;
}

async function startService(databaseUrl: string): Promise<number> {
  const port = await freePort();
  const began = performance.now();
  const child = spawn(process.execPath, [path.join(projectRoot, "src/main.ts")], {
    env: {
      PATH: process.env.PATH,
      NODE_ENV: "production",
      DATABASE_URL: databaseUrl,
      API_TOKENS: API_TOKEN,
      DASHBOARD_SESSION_SECRET: "bench-dashboard-session-secret-0123456789",
      HOST: "127.0.0.1",
      PORT: String(port),
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
      if (ready) return performance.now() - began;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}
