import { sql } from "kysely";
import type { Db } from "../database.ts";
import type { IucnStatus, TaxonUpdate } from "../tables/taxa.ts";

/** Which rows sync_conservation_status works on: resolved species not synced since `staleBefore` (null: force). */
export interface ConservationSelection {
  ids?: readonly number[];
  staleBefore: Date | null;
}

export interface TaxonForConservation {
  id: number;
  /** The accepted name: IUCN assesses accepted species. */
  acceptedName: string | null;
  scientificName: string;
}

function selectForConservation(db: Db, selection: ConservationSelection) {
  // These predicates match the partial index taxa_iucn_candidates_idx.
  let query = db.selectFrom("taxa").where("status", "=", "resolved").where("rank", "=", "SPECIES");
  if (selection.ids) query = query.where(sql<boolean>`id = any(${[...selection.ids]}::bigint[])`);
  const { staleBefore } = selection;
  if (staleBefore) query = query.where((eb) => eb.or([eb("iucn_synced_at", "is", null), eb("iucn_synced_at", "<", staleBefore)]));
  return query;
}

export async function findTaxaForConservation(db: Db, selection: ConservationSelection): Promise<TaxonForConservation[]> {
  return selectForConservation(db, selection)
    .select(["id", "accepted_name as acceptedName", "scientific_name as scientificName"])
    .orderBy("id")
    .execute();
}

/** Ids of due rows after `afterId`, in id order: keyset pages for fanning out. */
export async function findTaxonIdsForConservation(db: Db, selection: Omit<ConservationSelection, "ids">, page: { afterId: number; limit: number }): Promise<number[]> {
  const rows = await selectForConservation(db, selection).select("id").where("id", ">", page.afterId).orderBy("id").limit(page.limit).execute();
  return rows.map((row) => row.id);
}

export type ConservationRecord = Required<Pick<TaxonUpdate, "iucn_category" | "iucn_assessment_year" | "iucn_assessment_id" | "iucn_note">> & {
  iucn_status: Exclude<IucnStatus, "error">;
};

/** Records what IUCN said (a category, or why there is none) and marks the row synced. */
export async function recordConservationStatus(db: Db, id: number, record: ConservationRecord, now: Date): Promise<void> {
  await db.updateTable("taxa").set({ ...record, iucn_synced_at: now, updated_at: now }).where("id", "=", id).execute();
}

/** Records a per-row problem; an earlier category stays, and the row stays due. */
export async function recordConservationError(db: Db, id: number, message: string, now: Date): Promise<void> {
  await db.updateTable("taxa").set({ iucn_status: "error", iucn_note: message, updated_at: now }).where("id", "=", id).execute();
}
