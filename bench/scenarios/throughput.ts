/**
 * 1. Processing throughput: N no-op jobs committed at once into an idle, running system; the time
 * from that commit until graphile-worker's table is empty and (for the service) every job's history
 * says `succeeded`. Raw jobs are added with `add_jobs`, the service's through its own batch enqueue
 * (`enqueueJobs`), as they would arrive in production; adding them is not timed.
 * Also gives each subject's RSS after the run (scenario 5).
 */
import { pino } from "pino";
import { makeDatabase, type DatabaseHandle } from "../../src/db/database.ts";
import { enqueueJobs } from "../../src/enqueue.ts";
import { loadRegistry, type TaskRegistry } from "../../src/registry.ts";
import type { Stats } from "../subject.ts";
import { OUT_OF_THE_BOX } from "../lib/out-of-the-box.ts";
import { systemsInOrder, withSubject, type BenchContext } from "../lib/context.ts";
import type { System } from "../lib/database.ts";
import { BENCH_TASKS_DIRECTORY, NOOP_TASK } from "../lib/noop.ts";
import type { Measure } from "../lib/report.ts";

const SCENARIO = "1. Processing throughput (no-op jobs, concurrency 10)";

export async function throughput(context: BenchContext): Promise<{ measures: Measure[]; rssAfter: Record<System, number[]> }> {
  const { plan } = context;
  const configurations = [
    { id: "default", label: `${plan.throughputJobs.toLocaleString("en-US")} jobs, default options`, localQueueSize: 0 },
    { id: "batched", label: `${plan.throughputJobs.toLocaleString("en-US")} jobs, localQueue ${plan.localQueueSize}`, localQueueSize: plan.localQueueSize },
    // Each as it comes: the service's defaults against graphile-worker's library defaults (issue 15).
    { id: "outOfTheBox", label: `${plan.throughputJobs.toLocaleString("en-US")} jobs, each system's own defaults`, localQueueSize: OUT_OF_THE_BOX },
  ];
  const rates: Record<string, Record<System, number[]>> = {};
  const rssAfter: Record<System, number[]> = { raw: [], service: [] };
  const registry = await loadRegistry(BENCH_TASKS_DIRECTORY);
  for (let round = 0; round < plan.throughputRounds; round++) {
    for (const configuration of configurations) {
      for (const system of systemsInOrder(round)) {
        const rate = await withSubject(context, system, `throughput_${configuration.id}`, { localQueueSize: configuration.localQueueSize }, async (subject, database) => {
          // One connection for adding the jobs and for polling, opened before anything is timed.
          const handle = makeDatabase(database.url, { maxConnections: 1, logger: pino({ level: "warn" }) });
          try {
            await handle.pool.query("select 1");
            const done = subject.request<{ handled: number }>({ cmd: "awaitJobs", count: plan.throughputJobs, timeoutMs: 120_000 });
            done.catch(() => {}); // awaited below; a failure while the jobs are added must not go unhandled
            const committedAt = await prefill(handle, system, registry, plan.throughputJobs);
            await done;
            const finishedAt = await waitUntilDrained(handle, system, plan.throughputJobs);
            if (configuration.id === "default") rssAfter[system].push((await subject.request<Stats>({ cmd: "stats" })).rss / 2 ** 20);
            return plan.throughputJobs / ((finishedAt - committedAt) / 1000);
          } finally {
            await handle.close();
          }
        });
        ((rates[configuration.id] ??= { raw: [], service: [] })[system]).push(rate);
        context.log(`throughput ${configuration.id} round ${round + 1} ${system}: ${Math.round(rate)} jobs/s`);
      }
    }
  }
  return {
    measures: configurations.map((configuration) => ({
      id: `throughput.${configuration.id}`,
      scenario: SCENARIO,
      label: configuration.label,
      unit: "jobs/s",
      raw: rates[configuration.id]!.raw,
      service: rates[configuration.id]!.service,
      target: { kind: "ratio-at-least", value: configuration.id === "outOfTheBox" ? 5 : 0.9 },
    })),
    rssAfter,
  };
}

/** Adds the jobs in one transaction and returns when it committed (performance.now()). */
async function prefill(handle: DatabaseHandle, system: System, registry: TaskRegistry, count: number): Promise<number> {
  const payloads = Array.from({ length: count }, (_, seq) => ({ seq }));
  if (system === "raw") {
    const specs = JSON.stringify(payloads.map((payload) => ({ identifier: NOOP_TASK, payload })));
    // One statement: the jobs appear together when it commits.
    await handle.pool.query("select count(*) from graphile_worker.add_jobs(array(select s from json_populate_recordset(null::graphile_worker.job_spec, $1::json) s))", [specs]);
  } else {
    await handle.db.transaction().execute((trx) => enqueueJobs(trx, registry, NOOP_TASK, payloads, {}, { source: "app" }));
  }
  return performance.now();
}

/** Polls until the jobs table is empty and, for the service, every job's record says succeeded. */
async function waitUntilDrained(handle: DatabaseHandle, system: System, count: number): Promise<number> {
  const query =
    system === "raw"
      ? "select not exists (select from graphile_worker._private_jobs) as done"
      : `select not exists (select from graphile_worker._private_jobs)
           and (select count(*) from observing_jobs.job_records where phase = 'succeeded') = ${count} as done`;
  const deadline = performance.now() + 60_000;
  for (;;) {
    const { rows } = await handle.pool.query<{ done: boolean }>(query);
    if (rows[0]?.done) return performance.now();
    if (performance.now() > deadline) throw new Error(`${system}: jobs not drained within 60 s of their handlers running`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
