/**
 * "Backfill kingdom Y": re-resolve every taxon of a kingdom. Fans out `resolve_taxa` batch jobs
 * keyed by kingdom and their rows, so triggering the backfill again replaces its pending batches
 * instead of adding more. Its progress (batches done, pending, failed) is the job's `children` in
 * `GET /jobs/{id}`; `POST /jobs/{id}/cancel` removes the batches that have not started.
 */
import Type, { type Static } from "typebox";
import { findTaxonIdsToResolve } from "../src/db/repositories/taxa.ts";
import { batchJobKey, fanOut, MAX_ROWS_PER_BATCH } from "../src/taxa/batches.ts";
import { defineTask } from "../src/task.ts";

const payload = Type.Object(
  {
    kingdom: Type.String({ minLength: 1, maxLength: 100, description: "The kingdom, matched case-insensitively against kingdom_hint, else the resolved kingdom." }),
    force: Type.Optional(Type.Boolean({ default: true, description: "Re-resolve settled rows too (a backfill's usual meaning)." })),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_ROWS_PER_BATCH, default: 100, description: "Rows per resolve_taxa batch." })),
  },
  { additionalProperties: false },
);
export type BackfillKingdomPayload = Static<typeof payload>;

declare global {
  namespace GraphileWorker {
    interface Tasks {
      backfill_kingdom: BackfillKingdomPayload;
    }
  }
}

export default defineTask({
  description: "Re-resolve every taxon of a kingdom, in resolve_taxa batches (progress and cancel through the job API).",
  payload,
  defaults: {
    maxAttempts: 5,
    timeoutMs: 120_000,
    // One backfill of a kingdom at a time: triggering it again replaces a pending one.
    jobKey: (p) => `backfill_kingdom:${p.kingdom.toLowerCase()}`,
  },
  async run(p, { db, enqueue, logger, signal }) {
    const kingdom = p.kingdom.toLowerCase();
    const force = p.force ?? true;
    // Unlike a sweep, a backfill always fans out, however few rows it finds: its batches are its progress.
    const { batches, rows } = await fanOut({
      limit: p.batchSize ?? 100,
      findIds: (page) => findTaxonIdsToResolve(db, { kingdom, force }, page),
      // The kingdom is passed on as a hint for rows without one; it never filters GBIF's answer.
      enqueueBatch: (ids) =>
        enqueue(
          "resolve_taxa",
          { taxonIds: ids, kingdom: p.kingdom, force },
          // Keyed by the kingdom (in any case: matching ignores it) and the batch's rows, so a second
          // backfill replaces the same batches and a batch of other rows never overwrites one of these.
          { jobKey: batchJobKey(`backfill_kingdom:${kingdom}`, { taxonIds: ids, force }) ?? null },
        ),
      signal,
    });
    logger.info({ kingdom: p.kingdom, batches, rows }, "enqueued backfill batches");
    // The batches' own progress is the job's `children`; the result says what was enqueued.
    return { batches, rows };
  },
});
