import { sql, type Kysely } from "kysely";

/**
 * Frozen in time: never edit a migration that has shipped; add a new one.
 * `taxa` belongs to the app. Where it already exists, only the columns this service needs are added.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("taxa")
    .ifNotExists()
    .addColumn("id", "integer", (col) => col.primaryKey().generatedByDefaultAsIdentity())
    .addColumn("scientific_name", "text", (col) => col.notNull())
    .execute();

  const columns: Array<[string, string]> = [
    ["kingdom_hint", "text"],
    ["status", "text not null default 'unresolved'"],
    ["gbif_usage_key", "text"],
    ["gbif_accepted_usage_key", "text"],
    ["gbif_checklist_key", "text"],
    ["accepted_name", "text"],
    ["rank", "text"],
    ["usage_status", "text"],
    ["kingdom", "text"],
    ["phylum", "text"],
    ["class", "text"],
    ['"order"', "text"],
    ["family", "text"],
    ["genus", "text"],
    ["species", "text"],
    ["match_type", "text"],
    ["confidence", "smallint"],
    ["resolution_note", "text"],
    ["resolved_at", "timestamptz"],
    ["last_error", "text"],
    ["created_at", "timestamptz not null default now()"],
    ["updated_at", "timestamptz not null default now()"],
  ];
  for (const [name, type] of columns) {
    await sql.raw(`alter table taxa add column if not exists ${name} ${type}`).execute(db);
  }
  await sql`
    do $$ begin
      alter table taxa add constraint taxa_status_check
        check (status in ('unresolved', 'resolved', 'no_match', 'needs_review', 'error'));
    exception when duplicate_object then null;
    end $$`.execute(db);
  await sql`create index if not exists taxa_status_id_idx on taxa (status, id)`.execute(db);
  await sql`create index if not exists taxa_kingdom_id_idx on taxa (lower(coalesce(kingdom_hint, kingdom)), id)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // The table is the app's: dropping it would lose data that is not ours.
  await sql`drop index if exists taxa_status_id_idx`.execute(db);
  await sql`drop index if exists taxa_kingdom_id_idx`.execute(db);
}
