import type { ColumnType, Generated, Insertable, Selectable, Updateable } from "kysely";

/** Where a taxon's name stands against GBIF. `needs_review` marks a match we refuse to trust blindly. */
export const TAXON_STATUSES = ["unresolved", "resolved", "no_match", "needs_review", "error"] as const;
export type TaxonStatus = (typeof TAXON_STATUSES)[number];

/** Outcome of the last refresh_thumbnails visit. */
export type ThumbnailStatus = "found" | "no_item" | "ambiguous_item" | "no_image" | "error";
/** Outcome of the last sync_conservation_status visit. */
export type IucnStatus = "assessed" | "not_found" | "no_global_assessment" | "error";
/** Outcome of the last check_backbone_freshness visit. */
export type BackboneStatus = "current" | "deleted" | "synonym" | "not_found" | "error";

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
  /** Maintained by the app: the latest observation of this taxon. One half of "hot" (see README). */
  last_observed_at: Date | null;
  /** Maintained by the app: how many observations name this taxon. The other half of "hot". */
  observation_count: ColumnType<number, number | undefined, number>;
  /** Wikidata item whose P846 (GBIF taxon ID) is the row's backbone key, e.g. Q35255. */
  wikidata_id: string | null;
  /** The item's P18 image: a Wikimedia Commons file name as Wikidata holds it (spaces, no "File:"). */
  thumbnail_file: string | null;
  /** Commons Special:FilePath URL of the image at `thumbnail_width`; Commons redirects it to the current thumbnail. */
  thumbnail_url: string | null;
  /** A standard Wikimedia thumbnail width (COMMONS_THUMBNAIL_WIDTH when it was stored). */
  thumbnail_width: number | null;
  thumbnail_status: ThumbnailStatus | null;
  /** Why there is no thumbnail (ambiguous items, no image) or the last error. */
  thumbnail_note: string | null;
  /** When the row last got an answer from Wikidata (an image or none); errors leave it, so the row stays due. */
  thumbnail_refreshed_at: Date | null;
  /** IUCN Red List category code of the latest global assessment (LC, VU, EN, ... or a legacy code like LR/lc). */
  iucn_category: string | null;
  iucn_assessment_year: number | null;
  iucn_assessment_id: ColumnType<string | null, string | number | null | undefined, string | number | null>;
  iucn_status: IucnStatus | null;
  /** What the last sync found when there is no category, or the last error. */
  iucn_note: string | null;
  /** When the row last got an answer from IUCN; errors leave it, so the row stays due. */
  iucn_synced_at: Date | null;
  backbone_status: BackboneStatus | null;
  /** What the last freshness check found (deletion date, accepted key) or the last error. */
  backbone_note: string | null;
  /** When the stored backbone key was last checked against GBIF; errors leave it, so the row stays due. */
  backbone_checked_at: Date | null;
  created_at: ColumnType<Date, Date | undefined, Date>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

export type TaxonRow = Selectable<TaxaTable>;
export type NewTaxon = Insertable<TaxaTable>;
export type TaxonUpdate = Updateable<TaxaTable>;
