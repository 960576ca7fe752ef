import { sql } from "kysely";
import type { Db } from "../database.ts";
import type { TaxonRow, TaxonUpdate } from "../tables/taxa.ts";

/** Which rows a resolution run works on: without `force`, only those not settled yet. */
export interface ResolutionSelection {
  ids?: readonly number[];
  /** Rows whose kingdom hint (or resolved kingdom) is this one, compared case-insensitively. */
  kingdom?: string;
  force: boolean;
}

export type TaxonToResolve = Pick<TaxonRow, "id" | "scientific_name" | "kingdom_hint">;

function selectForResolution(db: Db, selection: ResolutionSelection) {
  let query = db.selectFrom("taxa");
  if (selection.ids) query = query.where(sql<boolean>`id = any(${[...selection.ids]}::bigint[])`);
  if (selection.kingdom) {
    query = query.where(sql<string>`lower(coalesce(kingdom_hint, kingdom))`, "=", selection.kingdom.toLowerCase());
  }
  // `error` rows are retried: that status is also how an exhausted job marks what it could not finish.
  if (!selection.force) query = query.where("status", "in", ["unresolved", "error"]);
  return query;
}

export async function findTaxaToResolve(db: Db, selection: ResolutionSelection): Promise<TaxonToResolve[]> {
  return selectForResolution(db, selection).select(["id", "scientific_name", "kingdom_hint"]).orderBy("id").execute();
}

/** Ids of matching rows after `afterId`, in id order: keyset pages for fanning out. */
export async function findTaxonIdsToResolve(
  db: Db,
  selection: Omit<ResolutionSelection, "ids">,
  page: { afterId: number; limit: number },
): Promise<number[]> {
  const rows = await selectForResolution(db, selection)
    .select("id")
    .where("id", ">", page.afterId)
    .orderBy("id")
    .limit(page.limit)
    .execute();
  return rows.map((row) => row.id);
}

export async function recordResolution(db: Db, id: number, update: TaxonUpdate): Promise<void> {
  await db.updateTable("taxa").set(update).where("id", "=", id).execute();
}

/** Records a per-row problem; a row that was already settled keeps its earlier result and gains the error text. */
export async function recordResolutionError(db: Db, id: number, message: string, now: Date): Promise<void> {
  await db
    .updateTable("taxa")
    .set({
      status: sql`case when status in ('unresolved', 'error') then 'error' else status end`,
      last_error: message,
      updated_at: now,
    })
    .where("id", "=", id)
    .execute();
}

/** Marks rows a dead job could not finish as `error`, leaving rows it did settle alone. */
export async function recordUnfinishedResolution(db: Db, ids: readonly number[], message: string, now: Date): Promise<number> {
  if (ids.length === 0) return 0;
  const result = await db
    .updateTable("taxa")
    .set({ status: "error", last_error: message, updated_at: now })
    .where(sql<boolean>`id = any(${[...ids]}::bigint[])`)
    .where("status", "in", ["unresolved", "error"])
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}
