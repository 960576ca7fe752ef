import type { ColumnType } from "kysely";

/** A dashboard sign-in, by the SHA-256 of the random id its cookie carries. */
export interface DashboardSessionsTable {
  id_hash: Buffer;
  caller_id: string;
  created_at: ColumnType<Date, Date | undefined, never>;
  expires_at: Date;
  ended_at: Date | null;
}
