import { sql, type Kysely } from "kysely";

/**
 * Frozen in time: never edit a migration that has shipped; add a new one.
 * Columns for the enrichment jobs (refresh_thumbnails, sync_conservation_status,
 * check_backbone_freshness) and the two columns the app maintains that define a "hot" taxon.
 * `taxa` belongs to the app, so only columns and indexes that are missing are added.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const columns: Array<[string, string]> = [
    // Maintained by the app: what makes a taxon "hot" for check_backbone_freshness.
    ["last_observed_at", "timestamptz"],
    ["observation_count", "integer not null default 0"],
    // refresh_thumbnails
    ["wikidata_id", "text"],
    ["thumbnail_file", "text"],
    ["thumbnail_url", "text"],
    ["thumbnail_width", "smallint"],
    ["thumbnail_status", "text"],
    ["thumbnail_note", "text"],
    ["thumbnail_refreshed_at", "timestamptz"],
    // sync_conservation_status
    ["iucn_category", "text"],
    ["iucn_assessment_year", "smallint"],
    ["iucn_assessment_id", "bigint"],
    ["iucn_status", "text"],
    ["iucn_note", "text"],
    ["iucn_synced_at", "timestamptz"],
    // check_backbone_freshness
    ["backbone_status", "text"],
    ["backbone_note", "text"],
    ["backbone_checked_at", "timestamptz"],
  ];
  for (const [name, type] of columns) {
    await sql.raw(`alter table taxa add column if not exists ${name} ${type}`).execute(db);
  }
  const checks: Array<[string, string]> = [
    ["taxa_thumbnail_status_check", "thumbnail_status in ('found', 'no_item', 'ambiguous_item', 'no_image', 'error')"],
    ["taxa_iucn_status_check", "iucn_status in ('assessed', 'not_found', 'no_global_assessment', 'error')"],
    ["taxa_backbone_status_check", "backbone_status in ('current', 'deleted', 'synonym', 'not_found', 'error')"],
  ];
  for (const [name, check] of checks) {
    await sql
      .raw(`do $$ begin alter table taxa add constraint ${name} check (${check}); exception when duplicate_object then null; end $$`)
      .execute(db);
  }

  // The sweeps page through candidates by id. These partial indexes hold only the candidates and
  // carry the staleness column, so a page is an index-only range scan, not a pass over the table.
  await sql`
    create index if not exists taxa_thumbnail_candidates_idx on taxa (id) include (thumbnail_refreshed_at)
    where status = 'resolved' and gbif_checklist_key = 'd7dddbf4-2cf0-4f39-9b2a-bb099caae36c'`.execute(db);
  await sql`
    create index if not exists taxa_iucn_candidates_idx on taxa (id) include (iucn_synced_at)
    where status = 'resolved' and rank = 'SPECIES'`.execute(db);
  // Hot rows are few: the freshness sweep finds them through these and sorts the handful by id.
  await sql`create index if not exists taxa_last_observed_at_idx on taxa (last_observed_at) where last_observed_at is not null`.execute(db);
  await sql`create index if not exists taxa_observation_count_idx on taxa (observation_count)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // The columns may hold the app's data (the hot columns are the app's): only our indexes go.
  for (const index of ["taxa_thumbnail_candidates_idx", "taxa_iucn_candidates_idx", "taxa_last_observed_at_idx", "taxa_observation_count_idx"]) {
    await sql.raw(`drop index if exists ${index}`).execute(db);
  }
}
