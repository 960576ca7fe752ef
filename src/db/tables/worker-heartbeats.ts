import type { ColumnType, Selectable } from "kysely";

export const POOL_STATUSES = ["live", "stopped", "dead"] as const;
export type PoolStatus = (typeof POOL_STATUSES)[number];

/** One row per graphile-worker pool: who runs it and when it last said it was alive. */
export interface WorkerHeartbeatsTable {
  pool_id: string;
  instance_id: string;
  revision: string | null;
  hostname: string;
  pid: number;
  runner: string;
  /** The tasks the pool serves; null for pools of instances older than this column. */
  tasks: ColumnType<string[] | null, string[] | undefined, never>;
  started_at: ColumnType<Date, Date | undefined, never>;
  last_seen: ColumnType<Date, Date | undefined, Date>;
  status: ColumnType<PoolStatus, PoolStatus | undefined, PoolStatus>;
  ended_at: Date | null;
  /** The jobs the pool was running (attempts begun, not ended) at its last beat; null when its instance does not say. */
  running_job_ids: ColumnType<string[] | null, string[] | undefined, string[] | null>;
}

export type WorkerHeartbeatRow = Selectable<WorkerHeartbeatsTable>;
