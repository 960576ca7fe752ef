/**
 * 2. Trigger-to-start latency: an idle system, jobs enqueued ~10 ms apart, each timed from the
 * enqueue call to its handler's first line, inside the subject (one clock). Raw: WorkerUtils.addJob.
 * The service: POST /jobs/bench_noop (from the same process, keep-alive) and the atomic-enqueue
 * helper (createJobClient().enqueue on the application's pool). Percentiles are per round.
 */
import { systemsInOrder, withSubject, type BenchContext } from "../lib/context.ts";
import type { Measure } from "../lib/report.ts";
import { percentiles } from "../lib/stats.ts";
import type { LatencyMode } from "../subject.ts";

const SCENARIO = "2. Trigger-to-start latency (idle worker, jobs 10 ms apart)";
const PERCENTILES = ["p50", "p95", "p99"] as const;

export async function latency(context: BenchContext): Promise<Measure[]> {
  const { plan } = context;
  const perRound = { addJob: [], helper: [], http: [] } as Record<LatencyMode, Array<ReturnType<typeof percentiles>>>;
  for (let round = 0; round < plan.latencyRounds; round++) {
    for (const system of systemsInOrder(round)) {
      const modes: LatencyMode[] = system === "raw" ? ["addJob"] : round % 2 === 0 ? ["http", "helper"] : ["helper", "http"];
      await withSubject(context, system, "latency", {}, async (subject) => {
        for (const mode of modes) {
          const samples = await subject.request<number[]>({
            cmd: "latency",
            mode,
            count: plan.latencyJobs,
            warmup: plan.latencyWarmup,
            intervalMs: plan.latencyIntervalMs,
          });
          const result = percentiles(samples);
          perRound[mode].push(result);
          context.log(`latency round ${round + 1} ${mode}: p50 ${result.p50.toFixed(2)} p95 ${result.p95.toFixed(2)} p99 ${result.p99.toFixed(2)} ms`);
        }
      });
    }
  }
  const measures: Measure[] = [];
  for (const [mode, label] of [["http", "POST /jobs/:task"], ["helper", "atomic-enqueue helper"]] as const) {
    for (const percentile of PERCENTILES) {
      measures.push({
        id: `latency.${mode}.${percentile}`,
        scenario: SCENARIO,
        label: `${label} → handler, ${percentile} (raw: addJob)`,
        unit: "ms",
        raw: perRound.addJob.map((result) => result[percentile]),
        service: perRound[mode].map((result) => result[percentile]),
        target: percentile === "p99" ? { kind: "excess-at-most", value: 2 } : null,
      });
    }
  }
  return measures;
}
