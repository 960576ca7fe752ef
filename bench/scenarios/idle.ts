/**
 * 4. Idle cost: both systems started at once, each on its own database, left idle; for each window
 * the statements each process sent (counted in the subject, exact), the transactions PostgreSQL
 * counted for its database (pg_stat_database, which lags by up to ~10 s, so only whole-run figures
 * are reliable) and the connections it holds. Also gives the idle RSS (scenario 5).
 */
import { withSubject, type BenchContext } from "../lib/context.ts";
import type { DatabaseCounters, System } from "../lib/database.ts";
import type { Measure } from "../lib/report.ts";
import type { SubjectProcess } from "../lib/subject-process.ts";
import type { Stats } from "../subject.ts";

const SCENARIO = "4. Idle cost (PostgreSQL load of an idle instance)";
/** Settling after start-up (first polls, cron registration) before the first window. */
const SETTLE_MS = 3000;
/**
 * What the service may send beyond raw graphile-worker: its heartbeat. Sized for the reliability
 * work's default (a heartbeat write every 10 s per worker pool) with room for one extra statement
 * every 5 s; raise it deliberately if the heartbeat design needs more.
 */
export const HEARTBEAT_ALLOWANCE_QPS = 0.4;

interface Sample {
  at: number;
  stats: Stats;
  counters: DatabaseCounters;
}

export async function idle(context: BenchContext): Promise<{ measures: Measure[]; idleRss: Record<System, number[]> }> {
  const { plan, server } = context;
  // Nested so both run at once: the service inside raw's callback.
  return withSubject(context, "raw", "idle", {}, (raw, rawDatabase) =>
    withSubject(context, "service", "idle", {}, async (service, serviceDatabase) => {
      const subjects = { raw: { subject: raw, database: rawDatabase.name }, service: { subject: service, database: serviceDatabase.name } };
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const samples: Record<System, Sample[]> = { raw: [], service: [] };
      const take = async () => {
        for (const system of ["raw", "service"] as const) {
          samples[system].push(await sample(subjects[system].subject, () => server.counters(subjects[system].database)));
        }
      };
      await take();
      for (let window = 0; window < plan.idleWindows; window++) {
        await new Promise((resolve) => setTimeout(resolve, plan.idleWindowMs));
        await take();
      }
      const rates = (system: System, pick: (sample: Sample) => number) =>
        samples[system].slice(1).map((current, index) => {
          const previous = samples[system][index]!;
          return (pick(current) - pick(previous)) / ((current.at - previous.at) / 1000);
        });
      const whole = (system: System, pick: (sample: Sample) => number) => {
        const first = samples[system][0]!;
        const last = samples[system].at(-1)!;
        return [(pick(last) - pick(first)) / ((last.at - first.at) / 1000)];
      };
      for (const system of ["raw", "service"] as const) {
        context.log(`idle ${system}: ${rates(system, (s) => s.stats.queries).map((rate) => rate.toFixed(2)).join(", ")} statements/s`);
      }
      const seconds = (plan.idleWindows * plan.idleWindowMs) / 1000;
      const measures: Measure[] = [
        {
          id: "idle.statements",
          scenario: SCENARIO,
          label: `statements sent, per ${plan.idleWindowMs / 1000} s window`,
          unit: "q/s",
          raw: rates("raw", (s) => s.stats.queries),
          service: rates("service", (s) => s.stats.queries),
          target: { kind: "excess-at-most", value: HEARTBEAT_ALLOWANCE_QPS },
        },
        {
          id: "idle.transactions",
          scenario: SCENARIO,
          label: `transactions PostgreSQL counted, over ${seconds} s`,
          unit: "tx/s",
          raw: whole("raw", (s) => s.counters.transactions),
          service: whole("service", (s) => s.counters.transactions),
          target: null,
        },
        {
          id: "idle.tuples",
          scenario: SCENARIO,
          label: `tuples read (returned + fetched), over ${seconds} s`,
          unit: "rows/s",
          raw: whole("raw", (s) => s.counters.tuplesReturned + s.counters.tuplesFetched),
          service: whole("service", (s) => s.counters.tuplesReturned + s.counters.tuplesFetched),
          target: null,
        },
        {
          id: "idle.connections",
          scenario: SCENARIO,
          label: "connections held",
          unit: "connections",
          raw: samples.raw.map((s) => s.counters.connections),
          service: samples.service.map((s) => s.counters.connections),
          // The bound: concurrency plus a small fixed number, here the pool's own overhead.
          target: { kind: "at-most", value: plan.concurrency + 5 },
        },
      ];
      const idleRss = {
        raw: [(await raw.request<Stats>({ cmd: "stats" })).rss / 2 ** 20],
        service: [(await service.request<Stats>({ cmd: "stats" })).rss / 2 ** 20],
      };
      return { measures, idleRss };
    }),
  );
}

async function sample(subject: SubjectProcess, counters: () => Promise<DatabaseCounters>): Promise<Sample> {
  const stats = await subject.request<Stats>({ cmd: "stats" });
  return { at: performance.now(), stats, counters: await counters() };
}
