/**
 * Refresh the Wikimedia Commons thumbnails of resolved taxa from Wikidata: the item whose P846
 * ("GBIF taxon ID") is the taxon's backbone key, then that item's P18 image, stored as a
 * Special:FilePath URL at COMMONS_THUMBNAIL_WIDTH. No item, two items (ambiguous) and no image are
 * data, recorded with the time; the row is due again after `staleAfterDays`.
 *
 * All jobs of this task run in the `wikidata` queue: a named queue runs one job at a time across
 * every instance, which with the client's one-request-at-a-time limit keeps us to Wikimedia's
 * "requests in series" etiquette without slowing the GBIF or IUCN jobs.
 */
import type { Static } from "typebox";
import {
  findTaxaForThumbnails,
  findTaxonIdsForThumbnails,
  recordThumbnail,
  recordThumbnailError,
  type TaxonForThumbnail,
  type ThumbnailRecord,
} from "../src/db/repositories/thumbnails.ts";
import { batchResult, workThroughRows, type BatchResult } from "../src/taxa/batches.ts";
import { defineEnrichmentTask } from "../src/taxa/enrichment-task.ts";
import type { TaskContext } from "../src/task.ts";
import { UpstreamError } from "../src/upstream/http.ts";
import { commonsThumbnailUrl, MAX_ENTITIES_PER_CALL, type WikidataItemImage } from "../src/upstream/wikidata.ts";

declare global {
  namespace GraphileWorker {
    interface Tasks {
      refresh_thumbnails: Static<typeof task.payload>;
    }
  }
}

const task = defineEnrichmentTask({
  name: "refresh_thumbnails",
  description: "Store a Wikimedia Commons thumbnail URL for resolved taxa from their Wikidata item (P846 → P18).",
  payload: {
    taxonIds: "Refresh exactly these rows (still skipping fresh ones unless force is set).",
    staleAfterDays: [30, "A thumbnail older than this is refreshed."],
    force: "Refresh rows whose thumbnail is still fresh.",
    // One wbgetentities call covers a batch of up to 50 items; two calls per row would be the alternative.
    limit: MAX_ENTITIES_PER_CALL,
  },
  defaults: {
    queueName: "wikidata",
    maxAttempts: 8,
    // A batch is ~51 calls in series, each allowed WIKIDATA_TIMEOUT_MS; rows done before a timeout stay done.
    timeoutMs: 180_000,
  },
  rows: (_p, { staleBefore }, { db }) => ({
    findIds: (page) => findTaxonIdsForThumbnails(db, { staleBefore }, page),
    findBatch: (ids) => findTaxaForThumbnails(db, { staleBefore, ids }),
  }),
  workBatch: refreshBatch,
});
export default task;

/** Its result: rows per outcome (found, no_image, no_item, ambiguous_item, error). */
async function refreshBatch(requested: number, rows: TaxonForThumbnail[], { db, upstream, logger, signal }: TaskContext): Promise<BatchResult> {
  const width = upstream.wikidata.thumbnailWidth;
  const recordError = (row: TaxonForThumbnail, error: UpstreamError) => recordThumbnailError(db, row.id, error.message, new Date());
  const common = { concurrency: 1, recordError, signal, logger };

  // First the item of each row; rows without exactly one item are settled here.
  const withItem: Array<TaxonForThumbnail & { itemId: string }> = [];
  const itemCounts = await workThroughRows(rows, {
    ...common,
    what: "find the Wikidata item of a taxon",
    async work(row) {
      const items = await upstream.wikidata.findItemsByGbifKey(row.backboneKey, signal);
      if (items.length === 1) {
        withItem.push({ ...row, itemId: items[0]! });
        return "item";
      }
      const ambiguous = items.length > 1;
      await recordThumbnail(
        db,
        row.id,
        {
          ...noThumbnail(),
          thumbnail_status: ambiguous ? "ambiguous_item" : "no_item",
          thumbnail_note: ambiguous
            ? `more than one Wikidata item has P846=${row.backboneKey} (${items.join(", ")})`
            : `no Wikidata item has P846=${row.backboneKey}`,
        },
        new Date(),
      );
      return ambiguous ? "ambiguous_item" : "no_item";
    },
  });

  // Then the images of those items, up to 50 per call, as Wikimedia's etiquette asks.
  const counts: Record<string, number> = {};
  for (let start = 0; start < withItem.length; start += MAX_ENTITIES_PER_CALL) {
    const chunk = withItem.slice(start, start + MAX_ENTITIES_PER_CALL);
    let images;
    try {
      images = await upstream.wikidata.findImages(chunk.map((row) => row.itemId), signal);
    } catch (error) {
      if (!(error instanceof UpstreamError) || error.transient) throw error;
      for (const row of chunk) await recordError(row, error);
      counts.error = (counts.error ?? 0) + chunk.length;
      logger.warn({ rows: chunk.length, err: error }, "could not read the Wikidata items' images");
      continue;
    }
    for (const row of chunk) {
      const record = thumbnailRecord(row, images.get(row.itemId) ?? { kind: "missing" }, width);
      await recordThumbnail(db, row.id, record, new Date());
      counts[record.thumbnail_status] = (counts[record.thumbnail_status] ?? 0) + 1;
    }
  }
  logger.info({ rows: withItem.length, ...counts }, "recorded Wikidata images");
  // Rows with one item are counted by what their image turned out to be, the others by why they have none.
  const { item: _withOneItem, ...settledWithoutItem } = itemCounts;
  for (const [outcome, n] of Object.entries(settledWithoutItem)) counts[outcome] = (counts[outcome] ?? 0) + n;
  return batchResult(requested, counts);
}

function thumbnailRecord(row: { itemId: string; backboneKey: string }, image: WikidataItemImage, width: number): ThumbnailRecord {
  switch (image.kind) {
    case "image":
      return {
        wikidata_id: image.itemId,
        thumbnail_file: image.file,
        thumbnail_url: commonsThumbnailUrl(image.file, width),
        thumbnail_width: width,
        thumbnail_status: "found",
        thumbnail_note: null,
      };
    case "no_image":
      return { ...noThumbnail(), wikidata_id: image.itemId, thumbnail_status: "no_image", thumbnail_note: `Wikidata item ${image.itemId} has no image (P18)` };
    case "missing":
      // The search index lags behind deletions: the item it named is gone.
      return { ...noThumbnail(), thumbnail_status: "no_item", thumbnail_note: `Wikidata item ${row.itemId} (found by P846=${row.backboneKey}) no longer exists` };
  }
}

function noThumbnail() {
  return { wikidata_id: null, thumbnail_file: null, thumbnail_url: null, thumbnail_width: null };
}
