/**
 * Resolve the scientific names in `taxa` against GBIF's species match API (v2, explicit checklist).
 *
 * A sweep (no `taxonIds`) that finds more rows than one batch fans out into batch jobs keyed by
 * their id range, so a re-run replaces pending batches instead of duplicating them and no single
 * job runs for long. A transient GBIF failure stops the batch and throws so the job is retried
 * with backoff; rows already recorded stay recorded, and a re-run skips them (idempotent).
 */
import pLimit from "p-limit";
import Type, { type Static } from "typebox";
import {
  findTaxaToResolve,
  findTaxonIdsToResolve,
  recordResolution,
  recordResolutionError,
  recordUnfinishedResolution,
} from "../src/db/repositories/taxa.ts";
import { defineTask, type TaskContext } from "../src/task.ts";
import { interpretMatch } from "../src/taxa/resolution.ts";
import { UpstreamError } from "../src/upstream/http.ts";

const MAX_BATCH = 1000;

const payload = Type.Object(
  {
    taxonIds: Type.Optional(
      Type.Array(Type.Integer({ minimum: 1 }), {
        minItems: 1,
        maxItems: MAX_BATCH,
        description: "Resolve exactly these rows (still skipping settled ones unless force is set).",
      }),
    ),
    kingdom: Type.Optional(
      Type.String({ minLength: 1, maxLength: 100, description: "Only rows of this kingdom (by hint, else by resolved kingdom)." }),
    ),
    force: Type.Optional(Type.Boolean({ default: false, description: "Re-resolve rows that are already settled." })),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_BATCH, default: 100, description: "Rows per batch job." }),
    ),
  },
  { additionalProperties: false },
);
export type ResolveTaxaPayload = Static<typeof payload>;

declare global {
  namespace GraphileWorker {
    interface Tasks {
      resolve_taxa: ResolveTaxaPayload;
    }
  }
}

export default defineTask({
  description: "Resolve scientific names in taxa against the GBIF backbone (fans out into batches).",
  payload,
  defaults: {
    maxAttempts: 8,
    timeoutMs: 50_000,
    // Jobs that call GBIF share one cap per instance, so a backlog of batches cannot crowd out
    // other work or hammer GBIF (which asks for 1-2 concurrent requests).
    concurrency: { limit: 2, group: "gbif" },
    // A batch is keyed by its rows: enqueueing the same batch again replaces the pending one.
    jobKey: (p) => (p.taxonIds ? `resolve_taxa:${p.force ? "force:" : ""}${p.taxonIds[0]}-${p.taxonIds.at(-1)}:${p.taxonIds.length}` : undefined),
  },
  async run(p, context) {
    const selection = { force: p.force ?? false, ...(p.kingdom ? { kingdom: p.kingdom } : {}) };
    const limit = p.limit ?? 100;
    if (p.taxonIds) return resolveBatch(await findTaxaToResolve(context.db, { ...selection, ids: p.taxonIds }), p.kingdom, context);

    const firstPage = await findTaxonIdsToResolve(context.db, selection, { afterId: 0, limit: limit + 1 });
    if (firstPage.length <= limit) {
      return resolveBatch(await findTaxaToResolve(context.db, { ...selection, ids: firstPage }), p.kingdom, context);
    }
    await fanOut(p, selection, limit, context);
  },
  /** A batch that used all its attempts leaves its unfinished rows as `error`, so they are visible and retried by the next sweep. */
  async onExhausted(p, { db, logger, error, job }) {
    if (!p.taxonIds) return; // a sweep touches no rows itself; the next scheduled sweep starts over
    const message = `resolve_taxa job ${job.id} gave up after ${job.attempt} attempts: ${error.message}`;
    const marked = await recordUnfinishedResolution(db, p.taxonIds, message, new Date());
    logger.warn({ marked }, "marked unfinished taxa as error");
  },
});

async function fanOut(
  p: ResolveTaxaPayload,
  selection: { force: boolean; kingdom?: string },
  limit: number,
  { db, enqueue, logger, signal }: TaskContext,
): Promise<void> {
  let afterId = 0;
  let batches = 0;
  let rows = 0;
  for (;;) {
    signal.throwIfAborted();
    const ids = await findTaxonIdsToResolve(db, selection, { afterId, limit });
    if (ids.length === 0) break;
    await enqueue("resolve_taxa", {
      taxonIds: ids,
      ...(p.force ? { force: true } : {}),
      ...(p.kingdom ? { kingdom: p.kingdom } : {}),
    });
    batches += 1;
    rows += ids.length;
    afterId = ids.at(-1)!;
  }
  logger.info({ batches, rows, batchSize: limit }, "fanned out into batch jobs");
}

async function resolveBatch(
  rows: Awaited<ReturnType<typeof findTaxaToResolve>>,
  kingdom: string | undefined,
  { db, upstream, logger, signal }: TaskContext,
): Promise<void> {
  const counts: Record<string, number> = {};
  let transient: UpstreamError | undefined;
  // Concurrency towards GBIF is bounded by the client; this bounds how many rows wait on it.
  const limit = pLimit(4);
  await Promise.all(
    rows.map((row) =>
      limit(async () => {
        if (transient || signal.aborted) return;
        try {
          const match = await upstream.gbif.match({ scientificName: row.scientific_name, kingdom: row.kingdom_hint ?? kingdom }, signal);
          const update = interpretMatch(match, row.kingdom_hint, new Date());
          await recordResolution(db, row.id, update);
          counts[update.status!] = (counts[update.status!] ?? 0) + 1;
        } catch (error) {
          if (error instanceof UpstreamError && !error.transient) {
            await recordResolutionError(db, row.id, error.message, new Date());
            counts.error = (counts.error ?? 0) + 1;
            logger.warn({ taxonId: row.id, err: error }, "could not resolve taxon");
          } else if (error instanceof UpstreamError) {
            transient ??= error;
          } else {
            throw error;
          }
        }
      }),
    ),
  );
  signal.throwIfAborted();
  const done = Object.values(counts).reduce((sum, n) => sum + n, 0);
  if (transient) {
    throw new Error(`${transient.message}; recorded ${done} of ${rows.length} rows, the rest are retried with the job`, {
      cause: transient,
    });
  }
  logger.info({ rows: rows.length, ...counts }, "resolved taxa batch");
}
