/**
 * Resolve the scientific names in `taxa` against GBIF's species match API (v2, explicit checklist).
 *
 * A sweep (no `taxonIds`) that finds more rows than one batch fans out into batch jobs keyed by
 * their rows (batchJobKey), so a re-run replaces pending batches instead of duplicating them and no single
 * job runs for long. A transient GBIF failure stops the batch and throws so the job is retried
 * with backoff; rows already recorded stay recorded, and a re-run skips them (idempotent).
 */
import Type, { type Static } from "typebox";
import {
  findTaxaToResolve,
  findTaxonIdsToResolve,
  recordResolution,
  recordResolutionError,
  recordUnfinishedResolution,
  type TaxonToResolve,
} from "../src/db/repositories/taxa.ts";
import {
  batchJobKey,
  batchOrSweep,
  batchResult,
  batchSizeField,
  forceField,
  RESULT_ROWS_LISTED,
  taxonIdsField,
  workThroughRows,
  type BatchResult,
  type SweepResult,
} from "../src/taxa/batches.ts";
import { defineTask, type JsonValue, type TaskContext } from "../src/task.ts";
import { interpretMatch } from "../src/taxa/resolution.ts";
import { GBIF_TASKS_CAP } from "../src/upstream/gbif.ts";


const payload = Type.Object(
  {
    taxonIds: taxonIdsField("Resolve exactly these rows (still skipping settled ones unless force is set)."),
    kingdom: Type.Optional(
      Type.String({ minLength: 1, maxLength: 100, description: "Only rows of this kingdom (by hint, else by resolved kingdom)." }),
    ),
    force: forceField("Re-resolve rows that are already settled."),
    limit: batchSizeField(100),
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
    concurrency: GBIF_TASKS_CAP,
    // A batch is keyed by its whole work (rows, kingdom, force): enqueueing it again replaces the pending one.
    jobKey: (p) => batchJobKey("resolve_taxa", p),
  },
  /**
   * With taxonIds: what each row resolved to (the first RESULT_ROWS_LISTED rows; counts cover all).
   * A sweep: that, when it ran in place, or the batch jobs it enqueued.
   */
  async run(p, context): Promise<ResolveBatchResult | SweepResult<ResolveBatchResult>> {
    const { db, enqueue, signal, logger } = context;
    const selection = { force: p.force ?? false, ...(p.kingdom ? { kingdom: p.kingdom } : {}) };
    return batchOrSweep(p.taxonIds, {
      limit: p.limit ?? 100,
      findIds: (page) => findTaxonIdsToResolve(db, selection, page),
      runBatch: async (ids) => resolveRows(ids.length, await findTaxaToResolve(db, { ...selection, ids }), p.kingdom, context),
      enqueueBatch: (ids) => enqueue("resolve_taxa", { taxonIds: ids, ...(p.force ? { force: true } : {}), ...(p.kingdom ? { kingdom: p.kingdom } : {}) }),
      signal,
      logger,
    });
  },
  /** A batch that used all its attempts leaves its unfinished rows as `error`, so they are visible and retried by the next sweep. */
  async onExhausted(p, { db, logger, error, job }) {
    if (!p.taxonIds) return; // a sweep's rows are all still candidates of the next scheduled sweep
    const message = `resolve_taxa job ${job.id} gave up after ${job.attempt} attempts: ${error.message}`;
    const marked = await recordUnfinishedResolution(db, p.taxonIds, message, new Date());
    logger.warn({ marked }, "marked unfinished taxa as error");
  },
});

/** What one row resolved to, as a result lists it. */
interface ResolvedRow {
  [key: string]: JsonValue;
  id: number;
  /** resolved, needs_review, no_match, or error (GBIF refused the row for good; the row says why). */
  status: string;
  /** GBIF's usage key (text: checklists other than the backbone use alphanumeric keys). */
  usageKey: string | null;
  acceptedName: string | null;
  matchType: string | null;
}

type ResolveBatchResult = BatchResult & { taxa: ResolvedRow[]; taxaNotListed: number };

async function resolveRows(requested: number, rows: TaxonToResolve[], kingdom: string | undefined, { db, upstream, logger, signal }: TaskContext): Promise<ResolveBatchResult> {
  const resolved: ResolvedRow[] = [];
  const counts = await workThroughRows(rows, {
    // Rows waiting on GBIF at once; the client itself bounds the calls (GBIF_CONCURRENCY).
    concurrency: 4,
    what: "resolve taxa",
    async work(row) {
      const match = await upstream.gbif.match({ scientificName: row.scientific_name, kingdom: row.kingdom_hint ?? kingdom }, signal);
      const update = interpretMatch(match, row.kingdom_hint, new Date());
      await recordResolution(db, row.id, update);
      resolved.push({ id: row.id, status: update.status!, usageKey: update.gbif_usage_key ?? null, acceptedName: update.accepted_name ?? null, matchType: update.match_type ?? null });
      return update.status!;
    },
    async recordError(row, error) {
      await recordResolutionError(db, row.id, error.message, new Date());
      resolved.push({ id: row.id, status: "error", usageKey: null, acceptedName: null, matchType: null });
    },
    signal,
    logger,
  });
  const listed = resolved.sort((a, b) => a.id - b.id).slice(0, RESULT_ROWS_LISTED);
  return { ...batchResult(requested, counts), taxa: listed, taxaNotListed: resolved.length - listed.length };
}
