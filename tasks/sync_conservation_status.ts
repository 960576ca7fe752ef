/**
 * Sync the IUCN Red List category of resolved species: the latest **global** assessment
 * (`latest` and scope "1"; regional assessments are ignored) gives the category code, the year
 * and the assessment id. A species IUCN does not know, or knows without a global assessment, is
 * data, recorded with the time; the row is due again after `staleAfterDays`.
 *
 * Without IUCN_API_TOKEN the job fails at once with a configuration error and calls nothing; a
 * token IUCN refuses (401) fails the job at its first call, so a bad token costs one call per
 * attempt. All jobs run in the `iucn` queue (one at a time across instances) and the client
 * spaces calls by IUCN_MIN_INTERVAL_MS, as IUCN asks, without holding up the other upstreams.
 */
import type { Static } from "typebox";
import {
  findTaxaForConservation,
  findTaxonIdsForConservation,
  recordConservationError,
  recordConservationStatus,
  type ConservationRecord,
  type TaxonForConservation,
} from "../src/db/repositories/conservation-status.ts";
import { batchResult, workThroughRows, type BatchResult } from "../src/taxa/batches.ts";
import { defineEnrichmentTask } from "../src/taxa/enrichment-task.ts";
import type { TaskContext } from "../src/task.ts";
import { IucnConfigurationError, type IucnConservationStatus } from "../src/upstream/iucn.ts";

declare global {
  namespace GraphileWorker {
    interface Tasks {
      sync_conservation_status: Static<typeof task.payload>;
    }
  }
}

const task = defineEnrichmentTask({
  name: "sync_conservation_status",
  description: "Sync the IUCN Red List category (latest global assessment) of resolved species.",
  payload: {
    taxonIds: "Sync exactly these rows (still skipping fresh ones unless force is set).",
    // The Red List is published about twice a year; a quarter keeps us close without re-asking often.
    staleAfterDays: [90, "A status older than this is synced again."],
    force: "Sync rows whose status is still fresh.",
    // At 0.5 s a call and up to two calls a row, 100 rows take about 1-2 minutes.
    limit: 100,
  },
  defaults: { queueName: "iucn", maxAttempts: 8, timeoutMs: 300_000 },
  precondition({ upstream }) {
    if (!upstream.iucn.hasToken) {
      throw new IucnConfigurationError("IUCN_API_TOKEN is not set: sync_conservation_status needs an IUCN Red List API token; no call was made");
    }
  },
  rows: (_p, { staleBefore }, { db }) => ({
    findIds: (page) => findTaxonIdsForConservation(db, { staleBefore }, page),
    findBatch: (ids) => findTaxaForConservation(db, { staleBefore, ids }),
  }),
  workBatch: syncBatch,
});
export default task;

/** Its result: rows per IUCN category (or not_found, no_global_assessment, error). */
async function syncBatch(requested: number, rows: TaxonForConservation[], { db, upstream, logger, signal }: TaskContext): Promise<BatchResult> {
  const counts = await workThroughRows(rows, {
    concurrency: 1,
    what: "sync the IUCN status of a taxon",
    signal,
    logger,
    recordError: (row, error) => recordConservationError(db, row.id, error.message, new Date()),
    async work(row) {
      const name = (row.acceptedName ?? row.scientificName).trim();
      const binomial = /^(\S+) (\S+)$/.exec(name);
      if (!binomial) {
        // The row says SPECIES but its name is not "Genus epithet": nothing IUCN could be asked.
        await recordConservationError(db, row.id, `'${name}' is not a binomial, so IUCN cannot be asked for it`, new Date());
        return "error";
      }
      const status = await upstream.iucn.findGlobalStatus({ genus: binomial[1]!, epithet: binomial[2]! }, signal);
      const record = conservationRecord(name, status);
      await recordConservationStatus(db, row.id, record, new Date());
      return record.iucn_status;
    },
  });
  return batchResult(requested, counts);
}

function conservationRecord(name: string, status: IucnConservationStatus): ConservationRecord {
  const none = { iucn_category: null, iucn_assessment_year: null, iucn_assessment_id: null };
  switch (status.kind) {
    case "assessed":
      return {
        iucn_category: status.category,
        iucn_assessment_year: status.year,
        iucn_assessment_id: status.assessmentId,
        iucn_status: "assessed",
        iucn_note: null,
      };
    case "no_global_assessment":
      return { ...none, iucn_status: "no_global_assessment", iucn_note: `IUCN has no latest global assessment of '${name}' (regional ones are not used)` };
    case "not_found":
      return { ...none, iucn_status: "not_found", iucn_note: `IUCN does not know '${name}'` };
  }
}
