/**
 * Enforces the job-history retention: succeeded and cancelled jobs are forgotten after
 * HISTORY_RETENTION_DAYS, dead and discarded ones after HISTORY_DEAD_RETENTION_DAYS (a dead job
 * past that is also removed from graphile-worker's dead-letter). Deletes in bounded batches so it
 * never holds long locks, and stops cleanly when the job is aborted.
 */
import Type, { type Static } from "typebox";
import type { Db } from "../src/db/database.ts";
import { pruneOutcomeCounts, pruneRecords } from "../src/db/repositories/job-records.ts";
import type { JobPhase } from "../src/db/tables/job-records.ts";
import { defineTask } from "../src/task.ts";

const payload = Type.Object(
  {
    // The same bounds as the settings they override: a cutoff further back is no date at all.
    succeededDays: Type.Optional(Type.Integer({ minimum: 0, maximum: 3650, description: "Override HISTORY_RETENTION_DAYS." })),
    deadDays: Type.Optional(Type.Integer({ minimum: 0, maximum: 3650, description: "Override HISTORY_DEAD_RETENTION_DAYS." })),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 50_000, default: 5000 })),
  },
  { additionalProperties: false },
);

declare global {
  namespace GraphileWorker {
    interface Tasks {
      prune_job_history: Static<typeof payload>;
    }
  }
}

export default defineTask({
  description: "Delete job history past its retention (run from the crontab).",
  payload,
  internal: true,
  defaults: { maxAttempts: 3, queueName: "maintenance", timeoutMs: 50_000 },
  async run(p, { db, logger, signal, config }) {
    const batchSize = p.batchSize ?? 5000;
    const windows = [
      { phases: ["succeeded", "cancelled"] as JobPhase[], days: p.succeededDays ?? config.history.retentionDays },
      { phases: ["dead", "discarded"] as JobPhase[], days: p.deadDays ?? config.history.deadRetentionDays },
    ];
    // Records pruned (with their events), and per-minute outcome counters.
    let pruned = 0;
    for (const { phases, days } of windows) {
      const cutoff = new Date(Date.now() - days * 86_400_000);
      for (;;) {
        signal.throwIfAborted();
        const count = await pruneBatch(db, phases, cutoff, batchSize);
        pruned += count;
        if (count < batchSize) break;
      }
    }
    // The overview's chart reads the last hour; a day of per-minute counters is plenty.
    const outcomeCounts = await pruneOutcomeCounts(db, new Date(Date.now() - 86_400_000));
    logger.info({ pruned }, "pruned job history");
    return { pruned, outcomeCounts };
  },
});

async function pruneBatch(db: Db, phases: JobPhase[], cutoff: Date, limit: number): Promise<number> {
  return db.transaction().execute(async (trx) => (await pruneRecords(trx, phases, cutoff, limit)).length);
}
