/**
 * The shape the enrichment tasks share (resolve_taxa's, made reusable): a sweep that fits in one
 * batch runs in place, a bigger one fans out into batch jobs keyed by id range; and a batch works
 * through its rows with the per-row rules:
 * - an answer (including "no data") is recorded on the row;
 * - a permanent upstream problem with one row is recorded on that row and the batch goes on;
 * - a transient upstream failure stops the batch and fails the job so it is retried with backoff.
 *   Rows already recorded stay recorded, and the retry's candidate query skips them;
 * - anything else (a configuration error, a database error) fails the job at once.
 */
import pLimit from "p-limit";
import Type from "typebox";
import type { Logger } from "../observability/logger.ts";
import { UpstreamError } from "../upstream/http.ts";

/** The most taxa rows one batch job takes. */
export const MAX_ROWS_PER_BATCH = 1000;

/** A sweep task's `taxonIds` payload field: exactly these rows, at most one batch of them. */
export function taxonIdsField(description: string) {
  return Type.Optional(Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1, maxItems: MAX_ROWS_PER_BATCH, description }));
}

/** A sweep task's `force` payload field: also the rows that are not due. */
export function forceField(description: string) {
  return Type.Optional(Type.Boolean({ default: false, description }));
}

/** An enrichment task's `staleAfterDays` payload field: a row recorded longer ago than this is due again. */
export function staleAfterDaysField(defaultDays: number, description: string) {
  return Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, default: defaultDays, description }));
}

const DAY_MS = 86_400_000;

/** Rows recorded before this are due again; null when `force` makes every row due. */
export function staleCutoff(now: Date, staleAfterDays: number, force: boolean | undefined): Date | null {
  return force ? null : new Date(now.getTime() - staleAfterDays * DAY_MS);
}

/** A sweep task's `limit` payload field: rows per batch job. */
export function batchSizeField(defaultSize: number) {
  return Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_ROWS_PER_BATCH, default: defaultSize, description: "Rows per batch job." }));
}

export interface SweepOptions {
  /** Rows per batch. */
  limit: number;
  /** Candidate ids after `afterId`, in id order (keyset pages). */
  findIds(page: { afterId: number; limit: number }): Promise<number[]>;
  runBatch(ids: number[]): Promise<void>;
  enqueueBatch(ids: number[]): Promise<unknown>;
  signal: AbortSignal;
  logger: Logger;
}

export async function sweepInBatches(options: SweepOptions): Promise<void> {
  const { limit, findIds, logger } = options;
  const firstPage = await findIds({ afterId: 0, limit: limit + 1 });
  if (firstPage.length <= limit) {
    if (firstPage.length > 0) await options.runBatch(firstPage);
    else logger.info("no rows are due");
    return;
  }
  const { batches, rows } = await fanOut(options);
  logger.info({ batches, rows, batchSize: limit }, "fanned out into batch jobs");
}

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

/** The standard job key of a batch: re-enqueueing the same rows replaces the pending job. */
export function batchJobKey(task: string, ids: readonly number[] | undefined, variant = ""): string | undefined {
  return ids ? `${task}:${variant ? `${variant}:` : ""}${ids[0]}-${ids.at(-1)}:${ids.length}` : undefined;
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

/** Works through the rows; throws after the rows in flight settle when one hit a transient failure. */
export async function workThroughRows<R extends { id: number }>(rows: readonly R[], options: WorkOptions<R>): Promise<Record<string, number>> {
  const { signal, logger } = options;
  const counts: Record<string, number> = {};
  let transient: UpstreamError | undefined;
  const limit = pLimit(options.concurrency);
  await Promise.all(
    rows.map((row) =>
      limit(async () => {
        if (transient || signal.aborted) return;
        let outcome: string;
        try {
          outcome = await options.work(row);
        } catch (error) {
          if (!(error instanceof UpstreamError)) throw error;
          if (error.transient) {
            transient ??= error;
            return;
          }
          await options.recordError(row, error);
          logger.warn({ taxonId: row.id, err: error }, `could not ${options.what}`);
          outcome = "error";
        }
        counts[outcome] = (counts[outcome] ?? 0) + 1;
      }),
    ),
  );
  signal.throwIfAborted();
  if (transient) {
    const done = Object.values(counts).reduce((sum, n) => sum + n, 0);
    throw new Error(`${transient.message} (stopped there; recorded ${done} of ${rows.length} rows)`, { cause: transient });
  }
  logger.info({ rows: rows.length, ...counts }, `${options.what}: batch done`);
  return counts;
}
