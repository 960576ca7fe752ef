import type { ColumnType, Generated, Insertable, Selectable, Updateable } from "kysely";

/** Where a taxon's name stands against GBIF. `needs_review` marks a match we refuse to trust blindly. */
export const TAXON_STATUSES = ["unresolved", "resolved", "no_match", "needs_review", "error"] as const;
export type TaxonStatus = (typeof TAXON_STATUSES)[number];

/**
 * The slice of the app's `taxa` table this service reads and writes. In production the
 * table belongs to the app; the service's migrations only add what is missing.
 */
export interface TaxaTable {
  id: Generated<number>;
  scientific_name: string;
  /** Kingdom the app believes the name belongs to; sent to GBIF as a hint, never trusted as a filter. */
  kingdom_hint: string | null;
  status: ColumnType<TaxonStatus, TaxonStatus | undefined, TaxonStatus>;
  /** GBIF usage key of the matched name, as text: checklists other than the backbone use alphanumeric keys. */
  gbif_usage_key: string | null;
  /** Accepted usage key: the matched key itself, or the accepted name's key when the match is a synonym. */
  gbif_accepted_usage_key: string | null;
  /** The checklist (dataset key) the keys above belong to. */
  gbif_checklist_key: string | null;
  accepted_name: string | null;
  /** Rank of the matched usage (SPECIES, GENUS, ...). */
  rank: string | null;
  /** Taxonomic status of the matched usage (ACCEPTED, SYNONYM, ...). */
  usage_status: string | null;
  kingdom: string | null;
  phylum: string | null;
  class: string | null;
  order: string | null;
  family: string | null;
  genus: string | null;
  species: string | null;
  /** GBIF diagnostics.matchType: EXACT, VARIANT, HIGHERRANK, NONE, ... */
  match_type: string | null;
  confidence: number | null;
  /** GBIF's note or the reason a match needs review. */
  resolution_note: string | null;
  resolved_at: Date | null;
  last_error: string | null;
  created_at: ColumnType<Date, Date | undefined, Date>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

export type TaxonRow = Selectable<TaxaTable>;
export type NewTaxon = Insertable<TaxaTable>;
export type TaxonUpdate = Updateable<TaxaTable>;
