import type { Migration } from "kysely/migration";
import * as taxa from "./0001_taxa.ts";
import * as jobHistory from "./0002_job_history.ts";
import * as workerHeartbeats from "./0005_worker_heartbeats.ts";

/** Every migration, in order. Imported statically so the build and the image carry them. */
export const migrations: Record<string, Migration> = {
  "0001_taxa": taxa,
  "0002_job_history": jobHistory,
  "0005_worker_heartbeats": workerHeartbeats,
};
