/**
 * The benchmark's no-op task: a task file like those in tasks/, loaded beside the real ones only by
 * the benchmark (bench/subject.ts), so jobs of it take the service's whole per-job path (validation,
 * time limit, history, everything else the worker wraps around a handler) and the handler itself
 * costs nothing but telling the benchmark it started.
 */
import Type, { type Static } from "typebox";
import { defineTask } from "../../src/task.ts";
import { noopProbe } from "../lib/noop.ts";

const payload = Type.Object({ seq: Type.Optional(Type.Integer({ minimum: 0 })) }, { additionalProperties: false });

declare global {
  namespace GraphileWorker {
    interface Tasks {
      bench_noop: Static<typeof payload>;
    }
  }
}

export default defineTask({
  description: "Does nothing (benchmark only).",
  payload,
  async run(p) {
    noopProbe.onRun(p.seq);
  },
});
