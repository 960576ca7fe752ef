import { sql } from "kysely";
import { GBIF_BACKBONE_CHECKLIST_KEY } from "../../upstream/gbif.ts";
import type { Db } from "../database.ts";
import type { TaxonUpdate, ThumbnailStatus } from "../tables/taxa.ts";

/** Which rows refresh_thumbnails works on: resolved against the backbone, and not refreshed since `staleBefore` (null: force). */
export interface ThumbnailSelection {
  ids?: readonly number[];
  staleBefore: Date | null;
}

export interface TaxonForThumbnail {
  id: number;
  /** The accepted usage's backbone key: Wikidata's P846 is on the taxon's item, and a synonym rarely has one of its own. */
  backboneKey: string;
}

function selectForThumbnails(db: Db, selection: ThumbnailSelection) {
  // These predicates match the partial index taxa_thumbnail_candidates_idx.
  let query = db.selectFrom("taxa").where("status", "=", "resolved").where("gbif_checklist_key", "=", GBIF_BACKBONE_CHECKLIST_KEY);
  if (selection.ids) query = query.where(sql<boolean>`id = any(${[...selection.ids]}::bigint[])`);
  const { staleBefore } = selection;
  if (staleBefore) query = query.where((eb) => eb.or([eb("thumbnail_refreshed_at", "is", null), eb("thumbnail_refreshed_at", "<", staleBefore)]));
  return query;
}

export async function findTaxaForThumbnails(db: Db, selection: ThumbnailSelection): Promise<TaxonForThumbnail[]> {
  const rows = await selectForThumbnails(db, selection)
    .select(["id", sql<string | null>`coalesce(gbif_accepted_usage_key, gbif_usage_key)`.as("backboneKey")])
    .orderBy("id")
    .execute();
  return rows.filter((row): row is TaxonForThumbnail => row.backboneKey !== null);
}

/** Ids of due rows after `afterId`, in id order: keyset pages for fanning out. */
export async function findTaxonIdsForThumbnails(db: Db, selection: Omit<ThumbnailSelection, "ids">, page: { afterId: number; limit: number }): Promise<number[]> {
  const rows = await selectForThumbnails(db, selection).select("id").where("id", ">", page.afterId).orderBy("id").limit(page.limit).execute();
  return rows.map((row) => row.id);
}

export type ThumbnailRecord = Required<Pick<TaxonUpdate, "wikidata_id" | "thumbnail_file" | "thumbnail_url" | "thumbnail_width" | "thumbnail_note">> & {
  thumbnail_status: Exclude<ThumbnailStatus, "error">;
};

/** Records what Wikidata said (an image, or why there is none) and marks the row refreshed. */
export async function recordThumbnail(db: Db, id: number, record: ThumbnailRecord, now: Date): Promise<void> {
  await db.updateTable("taxa").set({ ...record, thumbnail_refreshed_at: now, updated_at: now }).where("id", "=", id).execute();
}

/** Records a per-row problem; an earlier thumbnail stays, and the row stays due. */
export async function recordThumbnailError(db: Db, id: number, message: string, now: Date): Promise<void> {
  await db.updateTable("taxa").set({ thumbnail_status: "error", thumbnail_note: message, updated_at: now }).where("id", "=", id).execute();
}
