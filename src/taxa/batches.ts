/**
 * What the taxa tasks share (resolve_taxa and the enrichment tasks of enrichment-task.ts): a sweep
 * that fits in one batch runs in place, a bigger one fans out into batch jobs keyed by their work;
 * and a batch works through its rows with the per-row rules:
 * - an answer (including "no data") is recorded on the row;
 * - a permanent upstream problem with one row is recorded on that row and the batch goes on;
 * - a transient upstream failure stops the batch and fails the job so it is retried with backoff.
 *   Rows already recorded stay recorded, and the retry's candidate query skips them;
 * - anything else (a configuration error, a database error) stops the batch too and fails the job.
 * A batch that stops skips its rows not yet started and waits for those in flight before it fails.
 */
import { createHash } from "node:crypto";
import pLimit from "p-limit";
import Type from "typebox";
import { INT4_MAX } from "../input-limits.ts";
import type { Logger } from "../observability/logger.ts";
import type { JsonValue } from "../task.ts";
import { UpstreamError } from "../upstream/http.ts";

/** The most taxa rows one batch job takes. */
export const MAX_ROWS_PER_BATCH = 1000;

/** A sweep task's `taxonIds` payload field: exactly these rows, at most one batch of them. */
export function taxonIdsField(description: string) {
  // taxa.id is an integer column: a larger id could never name a row, and the query would fail on it.
  return Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: INT4_MAX }), { minItems: 1, maxItems: MAX_ROWS_PER_BATCH, description }));
}

/** A sweep task's `force` payload field: also the rows that are not due. */
export function forceField(description: string) {
  return Type.Optional(Type.Boolean({ default: false, description }));
}

/** A sweep task's `limit` payload field: rows per batch job. */
export function batchSizeField(defaultSize: number) {
  return Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_ROWS_PER_BATCH, default: defaultSize, description: "Rows per batch job." }));
}

export interface SweepOptions<B extends BatchResult = BatchResult> {
  /** Rows per batch. */
  limit: number;
  /** Candidate ids after `afterId`, in id order (keyset pages). */
  findIds(page: { afterId: number; limit: number }): Promise<number[]>;
  runBatch(ids: number[]): Promise<B>;
  enqueueBatch(ids: number[]): Promise<unknown>;
  signal: AbortSignal;
  logger: Logger;
}

/** What a batch job returns as its result: how many rows it worked, and how each ended. */
export interface BatchResult {
  [key: string]: JsonValue | undefined;
  /** Rows asked for (taxonIds) or found due. */
  requested: number;
  /** Rows due and worked on (a row settled since it was asked for is skipped unless forced). */
  worked: number;
  /** Worked rows per outcome (e.g. resolved, no_match, error). */
  counts: Record<string, number>;
}

/** What a sweep returns as its result: nothing due, one batch in place (with its result), or the batch jobs it enqueued. */
export type SweepResult<B extends BatchResult = BatchResult> =
  | { sweep: "nothing_due" }
  | ({ sweep: "in_place" } & B)
  | { sweep: "fanned_out"; batches: number; rows: number; batchSize: number };

/** A job that names its rows (`taxonIds`) works them as one batch; one that does not sweeps the rows due. */
export function batchOrSweep<B extends BatchResult>(taxonIds: number[] | undefined, options: SweepOptions<B>): Promise<B | SweepResult<B>> {
  return taxonIds ? options.runBatch(taxonIds) : sweepInBatches(options);
}

async function sweepInBatches<B extends BatchResult>(options: SweepOptions<B>): Promise<SweepResult<B>> {
  const { limit, findIds, logger } = options;
  const firstPage = await findIds({ afterId: 0, limit: limit + 1 });
  if (firstPage.length <= limit) {
    if (firstPage.length > 0) return { sweep: "in_place", ...(await options.runBatch(firstPage)) };
    logger.info("no rows are due");
    return { sweep: "nothing_due" };
  }
  const { batches, rows } = await fanOut(options);
  logger.info({ batches, rows, batchSize: limit }, "fanned out into batch jobs");
  return { sweep: "fanned_out", batches, rows, batchSize: limit };
}

/** A batch's result from the rows asked for, the rows worked and their outcomes. */
export function batchResult(requested: number, counts: Record<string, number>): BatchResult {
  return { requested, worked: Object.values(counts).reduce((sum, n) => sum + n, 0), counts };
}

/** Per-row details a result lists at most (the counts cover every row): results stay small. */
export const RESULT_ROWS_LISTED = 100;

export type FanOutOptions = Pick<SweepOptions, "limit" | "findIds" | "enqueueBatch" | "signal">;

/** Enqueues one batch job per page of `limit` candidate ids, in id order; says how many jobs and rows. */
export async function fanOut({ limit, findIds, enqueueBatch, signal }: FanOutOptions): Promise<{ batches: number; rows: number }> {
  let afterId = 0;
  let batches = 0;
  let rows = 0;
  for (;;) {
    signal.throwIfAborted();
    const ids = await findIds({ afterId, limit });
    if (ids.length === 0) break;
    await enqueueBatch(ids);
    batches += 1;
    rows += ids.length;
    afterId = ids.at(-1)!;
  }
  return { batches, rows };
}

/**
 * The standard job key of a batch, a function of the whole work: the rows (their set: sorted, each
 * once) and every other field that changes what the job does, hashed. Re-enqueueing the same work
 * replaces the pending job; different work never shares a key, so it never overwrites another
 * pending job. The readable part (`1-250:100:`) is for people looking at the queue; the digest decides.
 * Undefined (no key) for a job that names no rows.
 */
export function batchJobKey(prefix: string, work: { taxonIds?: readonly number[] | undefined; [field: string]: unknown }): string | undefined {
  if (!work.taxonIds) return undefined;
  const ids = [...new Set(work.taxonIds)].sort((a, b) => a - b);
  const digest = createHash("sha256").update(canonicalJson({ ...work, taxonIds: ids })).digest("base64url").slice(0, 22);
  return `${prefix}:${ids[0]}-${ids.at(-1)}:${ids.length}:${digest}`;
}

/** JSON with object keys in sorted order, so equal values always give equal text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value).filter(([, child]) => child !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, child]) => `${JSON.stringify(key)}:${canonicalJson(child)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

export interface WorkOptions<R> {
  /** Rows worked on at once; the upstream client bounds the calls themselves. */
  concurrency: number;
  /** Does one row and records its answer; returns the outcome for the batch's summary. */
  work(row: R): Promise<string>;
  /** Records a permanent upstream problem on the row. */
  recordError(row: R, error: UpstreamError): Promise<void>;
  signal: AbortSignal;
  logger: Logger;
  /** For the log lines and the retry message. */
  what: string;
}

/**
 * Works through the rows. The first failure (a transient upstream failure, or anything that is not
 * an upstream problem with one row) stops the batch: rows not yet started are skipped, the rows in
 * flight are waited for (their answers are recorded), and only then does the attempt fail. Without
 * the wait, the failed attempt's rows would go on calling upstream and writing in the background
 * while the retry worked through the same rows.
 */
export async function workThroughRows<R extends { id: number }>(rows: readonly R[], options: WorkOptions<R>): Promise<Record<string, number>> {
  const { signal, logger } = options;
  const counts: Record<string, number> = {};
  let transient: UpstreamError | undefined;
  let failure: { error: unknown } | undefined;
  let skipped = 0;
  const limit = pLimit(options.concurrency);
  await Promise.all(
    rows.map((row) =>
      limit(async () => {
        if (transient || failure || signal.aborted) {
          skipped += 1;
          return;
        }
        let outcome: string;
        try {
          outcome = await options.work(row);
        } catch (error) {
          if (error instanceof UpstreamError && error.transient) {
            transient ??= error;
            return;
          }
          if (!(error instanceof UpstreamError)) {
            failure ??= { error };
            return;
          }
          try {
            await options.recordError(row, error);
          } catch (recordFailure) {
            failure ??= { error: recordFailure };
            return;
          }
          logger.warn({ taxonId: row.id, err: error }, `could not ${options.what}`);
          outcome = "error";
        }
        counts[outcome] = (counts[outcome] ?? 0) + 1;
      }),
    ),
  );
  const done = Object.values(counts).reduce((sum, n) => sum + n, 0);
  if (failure) {
    logger.warn({ rows: rows.length, recorded: done, skipped, ...counts }, `${options.what}: batch stopped by a failure`);
    throw failure.error;
  }
  signal.throwIfAborted();
  if (transient) {
    throw new Error(`${transient.message} (stopped there; recorded ${done} of ${rows.length} rows)`, { cause: transient });
  }
  logger.info({ rows: rows.length, ...counts }, `${options.what}: batch done`);
  return counts;
}
