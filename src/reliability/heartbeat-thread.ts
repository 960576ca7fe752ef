/**
 * The heartbeat writer's worker thread (started by src/reliability/heartbeat.ts). It has its own
 * event loop and its own database connection, so nothing the main thread does can starve it: a
 * handler blocking the event loop, a long garbage collection of the main heap, a saturated
 * connection pool. Every `intervalMs` it records all of this process's pools in one statement and
 * publishes the outcome in shared memory, which the main thread reads without waiting:
 *
 *   slot 0  when the last beat that succeeded was sent (process.hrtime, ns); 0 = never
 *   slot 1  since when beats have succeeded without a failure in between; 0 = failing
 *   slot 2  the main thread's latest tick (it writes this every second)
 *   slot 3+ one per pool: when the last beat that found it live was sent; -1 = declared dead
 *
 * It stops beating when the main thread has not ticked for `stallLimitMs`: a main thread stuck
 * that long (an endless loop in a handler) should lose its jobs to other instances, as a dead one.
 * A beat that gets no answer within `beatTimeoutMs` (a half-open connection) drops the connection
 * and is tried again on a fresh one shortly after.
 *
 * It loads none of the service's modules but the leaf src/startup-memory.ts (types aside): each
 * module loaded here costs this isolate its memory too.
 */
import { parentPort, workerData } from "node:worker_threads";
import pg from "pg";
import { collect, reachCollector, type Collector, type MemoryRelease } from "../startup-memory.ts";
import type { HeartbeatThreadData, ToHeartbeatThread } from "./heartbeat.ts";

const data = workerData as HeartbeatThreadData;
const state = new BigInt64Array(data.shared);
const port = parentPort!;
const pools = new Map<string, { runner: string; tasks: string[]; session: string | null; slot: number; running: string[] | null }>();

let client: pg.Client | null = null;
let beating: Promise<void> | null = null;
let again = false;
let closed = false;
let stalledReported = false;
let failingSince: number | null = null;
let retry: NodeJS.Timeout | undefined;

const timer = setInterval(() => void beat(), data.intervalMs);

port.on("message", (message: ToHeartbeatThread) => {
  switch (message.type) {
    case "register":
      pools.set(message.poolId, { runner: message.runner, tasks: message.tasks, session: message.session, slot: message.slot, running: null });
      void beat();
      break;
    case "unregister":
      pools.delete(message.poolId);
      break;
    case "running":
      for (const [poolId, jobIds] of message.pools) {
        const pool = pools.get(poolId);
        if (pool) pool.running = jobIds;
      }
      break;
    case "beat":
      void beat();
      break;
    case "release-startup-memory":
      releaseStartupMemory(new Int32Array(message.handshake));
      break;
    case "close":
      void close();
      break;
  }
});

/**
 * This thread's start-up collection. An exception here must not end the thread (its pools would be
 * declared dead) nor leave the main thread waiting out the handshake: it is logged, and answered null.
 */
function releaseStartupMemory(handshake: Int32Array): void {
  let release: MemoryRelease | null = null;
  let collector: Collector | null;
  try {
    // The main thread keeps --expose-gc on until this context exists, then turns it off.
    collector = reachCollector();
  } finally {
    Atomics.store(handshake, 0, 1);
    Atomics.notify(handshake, 0);
  }
  try {
    release = collector ? collect(collector) : null;
  } catch (error) {
    port.postMessage({ type: "log", level: "warn", message: "the heartbeat thread could not release the memory start-up used", fields: { error: (error as Error).message } });
  }
  port.postMessage({ type: "startup-memory-released", release });
}

function now(): bigint {
  return process.hrtime.bigint();
}

async function connection(): Promise<pg.Client> {
  if (client) return client;
  const fresh = new pg.Client({
    connectionString: data.connectionString,
    application_name: "observing-jobs heartbeat",
    connectionTimeoutMillis: Math.max(data.beatTimeoutMs, data.connectTimeoutMs),
    query_timeout: data.beatTimeoutMs,
    statement_timeout: data.beatTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: data.keepAliveIdleMs,
  });
  fresh.on("error", () => {
    if (client === fresh) client = null;
  });
  try {
    await fresh.connect();
  } catch (error) {
    abandon(fresh);
    throw error;
  }
  client = fresh;
  return fresh;
}

/** Ends a connection without waiting for the server: it may be the one that stopped answering. */
function abandon(connection: pg.Client): void {
  if (client === connection) client = null;
  (connection as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream?.destroy?.();
  connection.end().catch(() => {});
}

/** One beat; calls while one is in flight are folded into one more. */
function beat(): Promise<void> {
  if (beating) {
    again = true;
    return beating;
  }
  beating = (async () => {
    do {
      again = false;
      await write();
    } while (again && !closed);
  })().finally(() => (beating = null));
  return beating;
}

async function write(): Promise<void> {
  if (closed || pools.size === 0) return;
  const stalledForMs = Number(now() - state[2]!) / 1e6;
  if (stalledForMs > data.stallLimitMs) {
    if (!stalledReported) port.postMessage({ type: "log", level: "error", message: "the main thread has been stuck too long: heartbeats stopped, so other instances take over this instance's jobs", fields: { stalledForMs: Math.round(stalledForMs) } });
    stalledReported = true;
    return;
  }
  stalledReported = false;
  const ids = [...pools.keys()];
  const entries = ids.map((id) => pools.get(id)!);
  const { instanceId, revision, hostname, pid } = data.identity;
  const sentAt = now();
  try {
    const db = await connection();
    // The database's clock sets last_seen: the sweeper compares it with the same clock. A pool
    // the sweeper declared dead stays dead: no row comes back for it.
    const { rows } = await db.query<{ pool_id: string }>(
      // One comma-joined list per pool (tasks, running jobs): unnest cannot pair a text[][] with the
      // other columns row by row. A null running list: not known yet (the main thread has not said).
      `insert into observing_jobs.worker_heartbeats as h (pool_id, runner, tasks, session_name, running_job_ids, instance_id, revision, hostname, pid)
       select pool_id, runner, string_to_array(tasks, ','), session_name, string_to_array(running, ',')::bigint[], $6, $7, $8, $9
       from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) as p(pool_id, runner, tasks, session_name, running)
       on conflict (pool_id) do update set last_seen = now(), running_job_ids = excluded.running_job_ids where h.status = 'live'
       returning pool_id`,
      [
        ids,
        entries.map((entry) => entry.runner),
        entries.map((entry) => entry.tasks.join(",")),
        entries.map((entry) => entry.session),
        entries.map((entry) => entry.running?.join(",") ?? null),
        instanceId,
        revision,
        hostname,
        pid,
      ],
    );
    state[0] = sentAt;
    if (state[1] === 0n) state[1] = sentAt;
    const alive = new Set(rows.map((row) => row.pool_id));
    const dead: string[] = [];
    for (const [index, id] of ids.entries()) {
      const pool = pools.get(id);
      if (!pool) continue; // unregistered meanwhile
      if (alive.has(id)) {
        state[3 + entries[index]!.slot] = sentAt;
      } else {
        state[3 + entries[index]!.slot] = -1n;
        pools.delete(id);
        dead.push(id);
      }
    }
    if (failingSince !== null) port.postMessage({ type: "log", level: "info", message: "heartbeats are written again", fields: { failedForMs: Math.round(performance.now() - failingSince) } });
    failingSince = null;
    port.postMessage({ type: "beat", ok: true, alive: [...alive], dead });
  } catch (error) {
    state[1] = 0n;
    if (client) abandon(client);
    if (failingSince === null) {
      failingSince = performance.now();
      port.postMessage({ type: "log", level: "warn", message: "could not write heartbeats; will retry on a new connection", fields: { error: (error as Error).message } });
    }
    port.postMessage({ type: "beat", ok: false, alive: [], dead: [] });
    // Soon, not a whole interval later: the next beat may be the one that keeps this instance alive.
    clearTimeout(retry);
    retry = setTimeout(() => void beat(), Math.min(1000, Math.max(50, data.intervalMs / 4)));
  }
}

async function close(): Promise<void> {
  closed = true;
  clearInterval(timer);
  clearTimeout(retry);
  await beating;
  const last = client;
  client = null;
  if (last) await Promise.race([last.end().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000))]);
  port.postMessage({ type: "closed" });
  port.close();
}
