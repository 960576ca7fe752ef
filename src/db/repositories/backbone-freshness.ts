import { sql } from "kysely";
import { GBIF_BACKBONE_CHECKLIST_KEY } from "../../upstream/gbif.ts";
import type { Db } from "../database.ts";
import type { BackboneStatus, TaxonRow } from "../tables/taxa.ts";

/**
 * A taxon is hot when the app observed it within `hotWithinDays` days (`last_observed_at`) or
 * counts at least `hotMinObservations` observations of it (`observation_count`).
 */
export interface HotDefinition {
  hotWithinDays: number;
  hotMinObservations: number;
}

/** Which rows check_backbone_freshness works on: resolved with a backbone key, not checked since `staleBefore` (null: force). */
export interface FreshnessSelection {
  ids?: readonly number[];
  /** Sweeps only take hot rows; a batch of explicit ids is checked whatever its heat. */
  hot?: HotDefinition & { now: Date };
  staleBefore: Date | null;
}

export type TaxonForFreshness = Pick<TaxonRow, "id" | "gbif_usage_key" | "gbif_accepted_usage_key" | "usage_status"> & { gbif_usage_key: string };

function selectForFreshness(db: Db, selection: FreshnessSelection) {
  let query = db
    .selectFrom("taxa")
    .where("status", "=", "resolved")
    .where("gbif_checklist_key", "=", GBIF_BACKBONE_CHECKLIST_KEY)
    .where(sql<boolean>`gbif_usage_key ~ '^[0-9]+$'`);
  if (selection.ids) query = query.where(sql<boolean>`id = any(${[...selection.ids]}::bigint[])`);
  const { hot, staleBefore } = selection;
  if (hot) {
    const observedSince = new Date(hot.now.getTime() - hot.hotWithinDays * 86_400_000);
    query = query.where((eb) => eb.or([eb("last_observed_at", ">=", observedSince), eb("observation_count", ">=", hot.hotMinObservations)]));
  }
  if (staleBefore) query = query.where((eb) => eb.or([eb("backbone_checked_at", "is", null), eb("backbone_checked_at", "<", staleBefore)]));
  return query;
}

export async function findTaxaForFreshness(db: Db, selection: FreshnessSelection): Promise<TaxonForFreshness[]> {
  const rows = await selectForFreshness(db, selection).select(["id", "gbif_usage_key", "gbif_accepted_usage_key", "usage_status"]).orderBy("id").execute();
  return rows as TaxonForFreshness[];
}

/** Ids of due rows after `afterId`, in id order: keyset pages for fanning out. */
export async function findTaxonIdsForFreshness(db: Db, selection: Omit<FreshnessSelection, "ids">, page: { afterId: number; limit: number }): Promise<number[]> {
  const rows = await selectForFreshness(db, selection).select("id").where("id", ">", page.afterId).orderBy("id").limit(page.limit).execute();
  return rows.map((row) => row.id);
}

/** The key still stands as it was resolved. */
export async function recordBackboneCurrent(db: Db, id: number, now: Date): Promise<void> {
  await db
    .updateTable("taxa")
    .set({ backbone_status: "current", backbone_note: null, backbone_checked_at: now, updated_at: now })
    .where("id", "=", id)
    .execute();
}

/**
 * The key was deleted, merged, turned into a synonym or is gone: the row goes back to
 * `unresolved` so resolve_taxa matches its name again, and the enrichments made from the old key
 * become due for when it is resolved again. The old keys stay until resolve_taxa overwrites them.
 */
export async function recordBackboneChanged(db: Db, id: number, change: { status: Exclude<BackboneStatus, "current" | "error">; note: string }, now: Date): Promise<void> {
  await db
    .updateTable("taxa")
    .set({
      status: "unresolved",
      backbone_status: change.status,
      backbone_note: change.note,
      backbone_checked_at: now,
      thumbnail_refreshed_at: null,
      iucn_synced_at: null,
      updated_at: now,
    })
    .where("id", "=", id)
    .where("status", "=", "resolved")
    .execute();
}

/** Records a per-row problem; the row stays as it is, and stays due. */
export async function recordBackboneError(db: Db, id: number, message: string, now: Date): Promise<void> {
  await db.updateTable("taxa").set({ backbone_status: "error", backbone_note: message, updated_at: now }).where("id", "=", id).execute();
}
