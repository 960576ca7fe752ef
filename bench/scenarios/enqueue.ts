/**
 * 3. Enqueue throughput. The service: autocannon (in the benchmark's process, on loopback) against
 * POST /jobs/bench_noop with `enqueueCallers` connections and against the batch endpoint with
 * `batchCallers` connections of `batchSize` payloads. Raw: the same numbers of in-process callers of
 * WorkerUtils.addJob / addJobs. The service's atomic-enqueue helper is measured the same in-process
 * way, which splits the HTTP layer's cost from the history's. Jobs are scheduled far ahead so
 * neither system's worker runs them (both still see every insert notification); each system works
 * in a fresh database per round.
 */
import autocannon from "autocannon";
import { API_TOKEN, systemsInOrder, withSubject, type BenchContext } from "../lib/context.ts";
import { NOOP_TASK } from "../lib/noop.ts";
import type { Measure } from "../lib/report.ts";
import type { SubjectProcess } from "../lib/subject-process.ts";
import type { LoadResult } from "../subject.ts";

const SCENARIO = "3. Enqueue throughput";
const RUN_AT = "2100-01-01T00:00:00.000Z";

type Kind = "single" | "batch";

export async function enqueueThroughput(context: BenchContext): Promise<Measure[]> {
  const { plan } = context;
  const figures = { rawSingle: [], rawBatch: [], httpSingle: [], httpBatch: [], helperSingle: [], helperBatch: [] } as Record<string, number[]>;
  for (let round = 0; round < plan.enqueueRounds; round++) {
    for (const system of systemsInOrder(round)) {
      await withSubject(context, system, "enqueue", {}, async (subject) => {
        for (const kind of ["single", "batch"] as const) {
          const key = kind === "single" ? "Single" : "Batch";
          if (system === "raw") {
            figures[`raw${key}`]!.push(await inProcess(context, subject, kind));
          } else {
            figures[`http${key}`]!.push(await overHttp(context, subject, kind));
            figures[`helper${key}`]!.push(await inProcess(context, subject, kind));
          }
        }
      });
      context.log(`enqueue round ${round + 1} ${system}: ${Object.entries(figures).map(([key, values]) => `${key} ${Math.round(values.at(-1) ?? 0)}`).join(", ")}`);
    }
  }
  const single = `${plan.enqueueCallers} callers`;
  const batch = `${plan.batchCallers} callers × ${plan.batchSize} jobs`;
  return [
    { id: "enqueue.http.single", scenario: SCENARIO, label: `POST /jobs/:task vs add_job, ${single}`, unit: "jobs/s", raw: figures.rawSingle!, service: figures.httpSingle!, target: { kind: "ratio-at-least", value: 0.8 } },
    { id: "enqueue.http.batch", scenario: SCENARIO, label: `POST /jobs/:task/batch vs addJobs, ${batch}`, unit: "jobs/s", raw: figures.rawBatch!, service: figures.httpBatch!, target: { kind: "ratio-at-least", value: 0.8 } },
    { id: "enqueue.helper.single", scenario: SCENARIO, label: `helper enqueue vs add_job, in-process, ${single}`, unit: "jobs/s", raw: figures.rawSingle!, service: figures.helperSingle!, target: null },
    { id: "enqueue.helper.batch", scenario: SCENARIO, label: `helper enqueueMany vs addJobs, in-process, ${batch}`, unit: "jobs/s", raw: figures.rawBatch!, service: figures.helperBatch!, target: null },
  ];
}

async function inProcess(context: BenchContext, subject: SubjectProcess, kind: Kind): Promise<number> {
  const { plan } = context;
  const result = await subject.request<LoadResult>({
    cmd: "enqueueLoad",
    kind,
    callers: kind === "single" ? plan.enqueueCallers : plan.batchCallers,
    batchSize: plan.batchSize,
    warmupMs: plan.enqueueWarmupMs,
    durationMs: plan.enqueueDurationMs,
    runAt: RUN_AT,
  });
  return result.jobsPerSecond;
}

async function overHttp(context: BenchContext, subject: SubjectProcess, kind: Kind): Promise<number> {
  const { plan } = context;
  const options: autocannon.Options = {
    url: `${subject.url}/jobs/${NOOP_TASK}${kind === "batch" ? "/batch" : ""}?runAt=${encodeURIComponent(RUN_AT)}`,
    method: "POST",
    connections: kind === "single" ? plan.enqueueCallers : plan.batchCallers,
    headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(kind === "single" ? { seq: 1 } : { payloads: Array.from({ length: plan.batchSize }, (_, seq) => ({ seq })) }),
  };
  await autocannon({ ...options, duration: plan.enqueueWarmupMs / 1000 });
  const result = await autocannon({ ...options, duration: plan.enqueueDurationMs / 1000 });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`HTTP ${kind} enqueue: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
  return (result["2xx"] * (kind === "single" ? 1 : plan.batchSize)) / result.duration;
}
