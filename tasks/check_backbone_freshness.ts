/**
 * Re-check the GBIF backbone keys of hot taxa (see HotDefinition: observed recently or often).
 * `GET /v1/species/{key}` answers for each stored usage key; a key that was deleted (soft-deleted
 * backbone usages answer 200 with `deleted`), is gone (404), or has become a synonym of another
 * taxon than the row records flips the row back to `unresolved`, and the task enqueues
 * resolve_taxa for those rows so they are matched again at once (resolve_taxa is the one writer
 * of match results: it records the new accepted usage with its classification). Either way the
 * row's checked-at time is recorded; it is due again after `staleAfterDays`.
 *
 * The backbone is frozen since 2023-08-28, so changes are rare; the check is cheap insurance for
 * the rows that matter. No named queue: GBIF calls are bounded by the client's GBIF_CONCURRENCY
 * per process, as for resolve_taxa, and batches may run beside the Wikidata and IUCN queues.
 */
import Type, { type Static } from "typebox";
import {
  findTaxaForFreshness,
  findTaxonIdsForFreshness,
  recordBackboneChanged,
  recordBackboneCurrent,
  recordBackboneError,
  type TaxonForFreshness,
} from "../src/db/repositories/backbone-freshness.ts";
import { INT4_MAX } from "../src/input-limits.ts";
import { batchResult, workThroughRows, type BatchResult } from "../src/taxa/batches.ts";
import { defineEnrichmentTask } from "../src/taxa/enrichment-task.ts";
import type { TaskContext } from "../src/task.ts";
import { GBIF_TASKS_CAP, type GbifNameUsage } from "../src/upstream/gbif.ts";

const hotSelection = {
  hotWithinDays: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 3650, default: 30, description: "Hot: observed within this many days (last_observed_at)." }),
  ),
  hotMinObservations: Type.Optional(
    // observation_count is an integer column.
    Type.Integer({ minimum: 1, maximum: INT4_MAX, default: 100, description: "Hot: at least this many observations (observation_count)." }),
  ),
};

declare global {
  namespace GraphileWorker {
    interface Tasks {
      check_backbone_freshness: Static<typeof task.payload>;
    }
  }
}

/** taxonomicStatus values that mean "not current; follow acceptedKey" (UPSTREAM_APIS.md §3). */
const NOT_CURRENT = /SYNONYM$|^MISAPPLIED$/;

const task = defineEnrichmentTask({
  name: "check_backbone_freshness",
  description: "Re-check the GBIF backbone keys of hot taxa; deleted, missing or re-synonymised keys go back to resolve_taxa.",
  payload: {
    taxonIds: "Check exactly these rows, hot or not (still skipping recently checked ones unless force is set).",
    selection: hotSelection,
    staleAfterDays: [7, "A check older than this is done again."],
    force: "Check rows that were checked recently.",
    limit: 200,
  },
  defaults: {
    maxAttempts: 8,
    timeoutMs: 120_000,
    // Shares resolve_taxa's cap across every instance: both call GBIF.
    concurrency: GBIF_TASKS_CAP,
  },
  rows: (p, { now, staleBefore }, { db }) => ({
    // The sweep checks hot rows only; rows named by taxonIds are checked hot or not.
    findIds: (page) => findTaxonIdsForFreshness(db, { staleBefore, hot: { hotWithinDays: p.hotWithinDays ?? 30, hotMinObservations: p.hotMinObservations ?? 100, now } }, page),
    findBatch: (ids) => findTaxaForFreshness(db, { staleBefore, ids }),
  }),
  workBatch: checkBatch,
});
export default task;

/** Its result: rows per outcome (current, deleted, not_found, synonym, error) and how many went back to resolve_taxa. */
async function checkBatch(requested: number, rows: TaxonForFreshness[], { db, upstream, logger, signal, enqueue }: TaskContext): Promise<BatchResult & { reResolved: number }> {
  const flipped: number[] = [];
  try {
    const counts = await workThroughRows(rows, {
      // GBIF_CONCURRENCY bounds the calls; this bounds the rows waiting on them.
      concurrency: 4,
      what: "check the backbone key of a taxon",
      signal,
      logger,
      recordError: (row, error) => recordBackboneError(db, row.id, error.message, new Date()),
      async work(row) {
        const usage = await upstream.gbif.findUsage(row.gbif_usage_key, signal);
        const change = describeChange(row, usage);
        if (!change) {
          await recordBackboneCurrent(db, row.id, new Date());
          return "current";
        }
        await recordBackboneChanged(db, row.id, change, new Date());
        flipped.push(row.id);
        logger.info({ taxonId: row.id, usageKey: row.gbif_usage_key, change: change.status, note: change.note }, "backbone key changed");
        return change.status;
      },
    });
    return { ...batchResult(requested, counts), reResolved: flipped.length };
  } finally {
    // Also when the batch stops on a transient failure: the rows flipped so far are re-resolved now, not tomorrow night.
    if (flipped.length > 0) await enqueue("resolve_taxa", { taxonIds: flipped.sort((a, b) => a - b) });
  }
}

/** What changed about the stored key, or undefined when it still stands as resolved. */
function describeChange(
  row: Pick<TaxonForFreshness, "gbif_usage_key" | "gbif_accepted_usage_key">,
  usage: GbifNameUsage | null,
): { status: "deleted" | "synonym" | "not_found"; note: string } | undefined {
  const key = row.gbif_usage_key;
  if (!usage) return { status: "not_found", note: `GBIF has no usage ${key} (404)` };
  if (usage.deleted) return { status: "deleted", note: `GBIF deleted usage ${key} on ${usage.deleted}` };
  const status = usage.taxonomicStatus ?? "";
  if (NOT_CURRENT.test(status)) {
    const accepted = usage.acceptedKey === undefined ? undefined : String(usage.acceptedKey);
    // A row resolved to this synonym already records its accepted usage: only a different one is news.
    if (accepted !== undefined && accepted === row.gbif_accepted_usage_key) return undefined;
    return {
      status: "synonym",
      note: `GBIF usage ${key} is now ${status}${accepted ? ` of ${accepted}${usage.accepted ? ` (${usage.accepted})` : ""}` : " with no accepted usage"}`,
    };
  }
  return undefined;
}
