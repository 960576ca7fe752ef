/**
 * `npm run bench`: observing-jobs against raw graphile-worker, side by side (issue 10). Runs every
 * scenario of bench/scenarios/ several rounds, interleaving the two systems, then writes
 * docs/benchmarks.json and the figures part of docs/BENCHMARKS.md.
 *
 *   npm run bench                      the full run (under 10 minutes on a 2-core machine)
 *   npm run bench -- --quick           fewer jobs and rounds; results go to a temporary folder
 *   npm run bench -- --only=latency,idle   some scenarios only (also to a temporary folder)
 *   npm run bench -- --profile         CPU profiles of every subject (node --cpu-prof) into .bench-profiles/
 *   npm run bench -- --verbose         the subjects' log lines on this terminal
 *   npm run bench -- --report-only     re-render docs/BENCHMARKS.md from docs/benchmarks.json
 *
 * DATABASE_URL: a PostgreSQL server (any database on it; the run creates and drops its own),
 * otherwise an embedded PostgreSQL in a temporary folder.
 */
import { execFileSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { projectRoot } from "../src/config.ts";
import { makePlan, type BenchContext } from "./lib/context.ts";
import { BenchServer, type System } from "./lib/database.ts";
import { renderResults, updateDocument, type Measure, type Results } from "./lib/report.ts";
import { footprint } from "./scenarios/footprint.ts";
import { enqueueThroughput } from "./scenarios/enqueue.ts";
import { idle } from "./scenarios/idle.ts";
import { latency } from "./scenarios/latency.ts";
import { resolveTaxa } from "./scenarios/resolve-taxa.ts";
import { throughput } from "./scenarios/throughput.ts";

const SCENARIOS = ["throughput", "latency", "enqueue", "idle", "footprint", "resolve"] as const;
type Scenario = (typeof SCENARIOS)[number];

const JSON_PATH = path.join(projectRoot, "docs/benchmarks.json");
const DOC_PATH = path.join(projectRoot, "docs/BENCHMARKS.md");

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    profile: { type: "boolean", default: false },
    verbose: { type: "boolean", default: false },
    "report-only": { type: "boolean", default: false },
  },
});

if (args["report-only"]) {
  const results = JSON.parse(await readFile(JSON_PATH, "utf8")) as Results;
  await writeDocument(DOC_PATH, results);
  process.stdout.write(`rendered ${path.relative(projectRoot, DOC_PATH)} from ${path.relative(projectRoot, JSON_PATH)}\n`);
  process.exit(0);
}

const only = args.only ? (args.only.split(",") as Scenario[]) : [...SCENARIOS];
for (const name of only) if (!SCENARIOS.includes(name)) throw new Error(`unknown scenario '${name}' (known: ${SCENARIOS.join(", ")})`);
const complete = !args.quick && only.length === SCENARIOS.length;

const began = performance.now();
const log = (message: string) => process.stdout.write(`[${((performance.now() - began) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
const server = await BenchServer.open(process.env.DATABASE_URL);
const profileDir = path.join(projectRoot, ".bench-profiles");
if (args.profile) await mkdir(profileDir, { recursive: true });
const context: BenchContext = {
  server,
  plan: makePlan(args.quick),
  spawn: { ...(args.profile ? { profileDir } : {}), verbose: args.verbose },
  log,
};

const measures: Measure[] = [];
let machine: Record<string, string | number>;
try {
  machine = await describeMachine(server);
  log(`PostgreSQL: ${server.embedded ? "embedded (DATABASE_URL unset)" : "DATABASE_URL"}; building the template databases`);
  await server.createTemplates();
  const rss: Partial<Record<"idle" | "afterThroughput", Record<System, number[]>>> = {};
  for (const scenario of only) {
    log(`scenario ${scenario}`);
    switch (scenario) {
      case "throughput": {
        const result = await throughput(context);
        measures.push(...result.measures);
        rss.afterThroughput = result.rssAfter;
        break;
      }
      case "latency":
        measures.push(...(await latency(context)));
        break;
      case "enqueue":
        measures.push(...(await enqueueThroughput(context)));
        break;
      case "idle": {
        const result = await idle(context);
        measures.push(...result.measures);
        rss.idle = result.idleRss;
        break;
      }
      case "footprint":
        measures.push(...(await footprint(context)));
        break;
      case "resolve":
        measures.push(await resolveTaxa(context));
        break;
    }
  }
  if (rss.idle) {
    measures.push({ id: "footprint.rssIdle", scenario: "5. Footprint", label: "RSS idle (end of scenario 4, in the benchmark's subject process)", unit: "MB", ...rss.idle, target: { kind: "at-most", value: 120 } });
  }
  if (rss.afterThroughput) {
    measures.push({ id: "footprint.rssAfterThroughput", scenario: "5. Footprint", label: "RSS after draining the default-options run", unit: "MB", ...rss.afterThroughput, target: null });
  }
} finally {
  await server.close().catch((error: unknown) => log(`cleanup failed: ${(error as Error).message}`));
}

const results: Results = {
  generatedAt: new Date().toISOString(),
  quick: args.quick,
  durationSeconds: (performance.now() - began) / 1000,
  machine,
  settings: describeSettings(),
  // Stable by scenario number, each scenario's measures in the order they were taken.
  measures: measures.map((measure, index) => ({ measure, index })).sort((a, b) => a.measure.scenario.localeCompare(b.measure.scenario) || a.index - b.index).map(({ measure }) => measure),
};

const outDir = complete ? path.dirname(JSON_PATH) : path.join(os.tmpdir(), "observing-jobs-bench");
await mkdir(outDir, { recursive: true });
const jsonPath = complete ? JSON_PATH : path.join(outDir, "benchmarks.json");
const docPath = complete ? DOC_PATH : path.join(outDir, "BENCHMARKS.md");
await writeFile(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
await writeDocument(docPath, results);
process.stdout.write(`\n${renderResults(results)}\n\nwrote ${jsonPath} and ${docPath}${complete ? "" : " (a partial or quick run never overwrites docs/)"}\n`);
if (args.profile) process.stdout.write(`CPU profiles in ${profileDir}\n`);

async function writeDocument(target: string, data: Results): Promise<void> {
  const existing = await readFile(target, "utf8").catch(() => "# Benchmarks\n");
  await writeFile(target, updateDocument(existing, renderResults(data)));
}

async function describeMachine(bench: BenchServer): Promise<Record<string, string | number>> {
  const cpus = os.cpus();
  const packageVersion = async (name: string) =>
    (JSON.parse(await readFile(path.join(projectRoot, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
  return {
    cpu: `${cpus[0]?.model ?? "unknown"} × ${cpus.length}`,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    postgresql: `${await bench.version().catch(() => "unknown")} (${bench.embedded ? "embedded" : "external"}, same machine)`,
    "graphile-worker": await packageVersion("graphile-worker"),
    "observing-jobs": gitDescription(),
    note: "a shared 2-core development machine: other work ran alongside, so compare ratios, not absolute figures",
  };
}

function describeSettings(): Record<string, string | number | boolean> {
  const { plan } = context;
  return {
    "worker concurrency": plan.concurrency,
    "poll interval": `${plan.pollIntervalMs} ms`,
    "batch delays (both systems, every run)": "completeJobBatchDelay 0, failJobBatchDelay 0",
    "batched runs": `localQueue.size ${plan.localQueueSize}`,
    "throughput rounds": `${plan.throughputRounds} × ${plan.throughputJobs} jobs per system and configuration`,
    "latency rounds": `${plan.latencyRounds} × ${plan.latencyJobs} jobs (after ${plan.latencyWarmup} warm-up) per mode, ${plan.latencyIntervalMs} ms apart`,
    "enqueue rounds": `${plan.enqueueRounds} × ${plan.enqueueDurationMs / 1000} s per measure (after ${plan.enqueueWarmupMs / 1000} s warm-up)`,
    "idle": `${plan.idleWindows} windows × ${plan.idleWindowMs / 1000} s, both systems at once`,
    "footprint rounds": `${plan.coldStartRounds} × (raw, service, service with an OTLP exporter), RSS read ${plan.footprintIdleMs / 1000} s after ready`,
    "resolve_taxa rounds": `${plan.resolveRounds} × ${plan.taxa} taxa, GBIF answering in ${plan.gbifDelayMs} ms`,
    "service logging": "LOG_LEVEL info, JSON to /dev/null (raw: graphile-worker's console logger, same destination)",
  };
}

function gitDescription(): string {
  try {
    const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: projectRoot, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "tasks"], { cwd: projectRoot, encoding: "utf8" }).trim() !== "";
    return `${commit}${dirty ? " with uncommitted changes to src/ or tasks/" : ""}`;
  } catch {
    return "unknown (not a git checkout)";
  }
}
