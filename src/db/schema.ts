import type { TaxaTable } from "./tables/taxa.ts";

/** Every table the service touches through Kysely. Tables of other schemas are keyed "schema.table". */
export interface Database {
  taxa: TaxaTable;
}
