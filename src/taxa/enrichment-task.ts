/**
 * An enrichment task records something about taxa rows from an upstream (a thumbnail, an IUCN
 * status, a backbone check), row by row; a row is due again `staleAfterDays` after it was last
 * recorded. A job that names its rows (`taxonIds`) works them as one batch; one that does not sweeps
 * the rows due (src/taxa/batches.ts: one batch in place, or batch jobs of the same task keyed by
 * their work). A task file says only what is its own: its payload's descriptions and defaults, how
 * to find its rows, and how to work a batch of them.
 */
import Type, { type Static, type TProperties } from "typebox";
import { defineTask, type TaskContext, type TaskDefaults, type TaskDefinition } from "../task.ts";
import { batchJobKey, batchOrSweep, batchSizeField, forceField, taxonIdsField, type BatchResult, type SweepResult } from "./batches.ts";

/** What an enrichment task says about its payload fields; `selection` holds the fields only that task has. */
export interface EnrichmentPayloadFields<S extends TProperties> {
  /** The description of `taxonIds`. */
  taxonIds: string;
  selection?: S;
  staleAfterDays: [defaultDays: number, description: string];
  /** The description of `force`. */
  force: string;
  /** The default of `limit` (rows per batch job). */
  limit: number;
}

/**
 * The payload of an enrichment task: taxonIds, the task's own selection fields, staleAfterDays,
 * force and limit, in that order (the order the API and the dashboard form list them), and no other field.
 */
function enrichmentPayload<S extends TProperties>(fields: EnrichmentPayloadFields<S>) {
  const { selection = {} as S } = fields;
  const [defaultDays, staleDescription] = fields.staleAfterDays;
  return Type.Object(
    {
      taxonIds: taxonIdsField(fields.taxonIds),
      ...selection,
      staleAfterDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, default: defaultDays, description: staleDescription })),
      force: forceField(fields.force),
      limit: batchSizeField(fields.limit),
    },
    { additionalProperties: false },
  );
}

type EnrichmentSchema<S extends TProperties> = ReturnType<typeof enrichmentPayload<S>>;

/** An enrichment task's payload, as its handler gets it. */
type EnrichmentPayload<S extends TProperties = Record<never, never>> = Static<EnrichmentSchema<S>>;

/** Which rows are due: those recorded before `staleBefore` (null when `force` makes every row due), as of `now`. */
export interface Due {
  now: Date;
  staleBefore: Date | null;
}

/** Where a job finds its rows: candidate ids for the sweep, and the rows of a batch. */
export interface EnrichmentRows<R> {
  /** Candidate ids after `afterId`, in id order (keyset pages): the rows due that a sweep selects. */
  findIds(page: { afterId: number; limit: number }): Promise<number[]>;
  /** The rows of a batch still due (a row recorded since it was asked for is skipped unless forced). */
  findBatch(ids: readonly number[]): Promise<R[]>;
}

export interface EnrichmentTaskDefinition<S extends TProperties, R, B extends BatchResult> {
  /** The task's identifier (its file name): the prefix of its batch job keys and the task its sweep fans out into. */
  name: keyof GraphileWorker.Tasks & string;
  description: string;
  payload: EnrichmentPayloadFields<S>;
  /** Every default but the job key, which is the batch's work (batchJobKey). */
  defaults?: Omit<TaskDefaults<EnrichmentPayload<S>>, "jobKey">;
  /** Throws when the task cannot run at all (a missing token), before any row is read or batch enqueued. */
  precondition?(context: TaskContext): void;
  rows(payload: EnrichmentPayload<S>, due: Due, context: TaskContext): EnrichmentRows<R>;
  /** Works a batch: `requested` rows were asked for, `rows` are those still due. */
  workBatch(requested: number, rows: R[], context: TaskContext): Promise<B>;
}

/** The fields every enrichment payload has (enrichmentPayload), as the generic code below reads them. */
interface CommonFields {
  [field: string]: unknown;
  taxonIds?: number[];
  staleAfterDays?: number;
  force?: boolean;
  limit?: number;
}

const DAY_MS = 86_400_000;

/** A task file's default export for an enrichment task. */
export function defineEnrichmentTask<S extends TProperties = Record<never, never>, R = never, B extends BatchResult = BatchResult>(
  definition: EnrichmentTaskDefinition<S, R, B>,
): TaskDefinition<EnrichmentSchema<S>> {
  const { name, payload: fields } = definition;
  return defineTask({
    name,
    description: definition.description,
    payload: enrichmentPayload(fields),
    // TypeScript cannot resolve Static<> of a TypeBox object with generic properties: `common` reads the fields every enrichment payload has.
    defaults: { ...definition.defaults, jobKey: (p) => batchJobKey(name, p as CommonFields) },
    async run(p, context): Promise<B | SweepResult<B>> {
      const common = p as CommonFields;
      definition.precondition?.(context);
      const now = new Date();
      const staleAfterDays = common.staleAfterDays ?? fields.staleAfterDays[0];
      const rows = definition.rows(p, { now, staleBefore: common.force ? null : new Date(now.getTime() - staleAfterDays * DAY_MS) }, context);
      return batchOrSweep(common.taxonIds, {
        limit: common.limit ?? fields.limit,
        findIds: rows.findIds,
        runBatch: async (ids) => definition.workBatch(ids.length, await rows.findBatch(ids), context),
        // Each batch carries the sweep's settings (staleAfterDays, force, the task's selection), so they key it too.
        enqueueBatch: (ids) => context.enqueue(name, { ...common, taxonIds: ids }),
        signal: context.signal,
        logger: context.logger,
      });
    },
  });
}
