/**
 * `npm start` with no DATABASE_URL, the way a newcomer runs it: Ctrl-C in the terminal (SIGINT to
 * the whole process group) and a second local instance on the same embedded PostgreSQL.
 */
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stopEmbeddedPostgresNow } from "../../src/db/embedded-postgres.ts";
import { testEnvironment, waitFor } from "../helpers/env.ts";
import { freePort, runToCompletion, startChild, type ChildService } from "../helpers/service-process.ts";

let dir: string;
let pgPort: number;
let settings: Record<string, string>;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-embedded-"));
  await chmod(dir, 0o755); // as root, PostgreSQL runs as `postgres` and must reach its data directory
  pgPort = await freePort();
  // LOG_LEVEL=info, the default a newcomer sees.
  settings = testEnvironment({ EMBEDDED_POSTGRES_DIR: path.join(dir, "pg"), EMBEDDED_POSTGRES_PORT: String(pgPort), LOG_LEVEL: "info" });
});

afterAll(async () => {
  // Only if a test failed half way.
  stopEmbeddedPostgresNow(path.join(dir, "pg"));
  stopEmbeddedPostgresNow(path.join(dir, "fresh"));
  await rm(dir, { recursive: true, force: true });
});

function start(): ChildService {
  return startChild(["src/main.ts"], settings, { ownProcessGroup: true });
}

/** The log lines printed after `from` characters of output, as parsed JSON. */
function linesAfter(service: ChildService, from: number): Array<{ severity: string; message: string; timestamp?: unknown }> {
  return service
    .output()
    .slice(from)
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as { severity: string; message: string; timestamp?: unknown });
}

function portIsOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });
}

async function poolStatuses(): Promise<Array<{ instance_id: string; status: string }>> {
  const client = new pg.Client({ connectionString: `postgres://postgres:postgres@127.0.0.1:${pgPort}/observing_jobs` });
  await client.connect();
  try {
    return (await client.query<{ instance_id: string; status: string }>("select instance_id, status from observing_jobs.worker_heartbeats")).rows;
  } finally {
    await client.end();
  }
}

function instanceId(service: ChildService): string {
  return /"instanceId":"([^"]+)"/.exec(service.output())![1]!;
}

describe("the embedded PostgreSQL of a local instance", () => {
  it("Ctrl-C ends the service in a few lines, stops the server after the pools, and leaves no pool for the next start to declare dead", { timeout: 180_000 }, async () => {
    const first = start();
    await first.waitForStatus("/readyz", 200, 60_000);
    expect(first.output()).toMatch(/DATABASE_URL is not set: started an embedded PostgreSQL/);
    const firstInstance = instanceId(first);
    const printed = first.output().length;

    first.killGroup("SIGINT");
    expect(await first.exited).toBe(0);
    const lines = linesAfter(first, printed);
    // The last line is logged right behind the one before: exiting before the earlier one was written
    // put them in the other order once in many loaded runs (src/observability/logger.ts, flushLogs).
    // The times say whether lines were written out of order or logged out of order.
    const when = JSON.stringify(lines.map((line) => [line.message, line.timestamp]));
    expect(lines.map((line) => line.message), when).toEqual([
      "shutting down: no new jobs, waiting for running jobs",
      "stopped the embedded PostgreSQL",
      "shut down cleanly",
    ]);
    expect(lines.filter((line) => line.severity !== "INFO")).toEqual([]);
    expect(await portIsOpen(pgPort)).toBe(false);
    expect(existsSync(path.join(dir, "pg", "PG_VERSION"))).toBe(true);

    const second = start();
    await second.waitForStatus("/readyz", 200, 60_000);
    expect(second.output()).toMatch(/"fresh":false/); // the data was kept
    const pools = await poolStatuses();
    const ofFirst = pools.filter((pool) => pool.instance_id === firstInstance);
    expect(ofFirst.length).toBeGreaterThan(0);
    expect(ofFirst.every((pool) => pool.status === "stopped"), JSON.stringify(ofFirst)).toBe(true);
    expect(second.output()).not.toMatch(/declared dead/);
    second.killGroup("SIGINT");
    expect(await second.exited).toBe(0);
  });

  it("Ctrl-C while the embedded PostgreSQL is still being set up ends in a clean stop too", { timeout: 180_000 }, async () => {
    const fresh = { ...settings, EMBEDDED_POSTGRES_DIR: path.join(dir, "fresh"), EMBEDDED_POSTGRES_PORT: String(await freePort()) };
    const service = startChild(["src/main.ts"], fresh, { ownProcessGroup: true });
    await waitFor(() => existsSync(fresh.EMBEDDED_POSTGRES_DIR), { timeoutMs: 60_000, message: "initdb to begin" });
    service.killGroup("SIGINT");
    expect(await service.exited, service.output()).toBe(0);
    expect(service.output()).toMatch(/stopped the embedded PostgreSQL/);
    expect(existsSync(path.join(fresh.EMBEDDED_POSTGRES_DIR, "postmaster.pid"))).toBe(false);
    expect(await portIsOpen(Number(fresh.EMBEDDED_POSTGRES_PORT))).toBe(false);
  });

  it("a second instance keeps working when the first stops, and the last one to stop stops the server", { timeout: 180_000 }, async () => {
    const first = start();
    await first.waitForStatus("/readyz", 200, 60_000);
    const second = start();
    await second.waitForStatus("/readyz", 200, 60_000);
    expect(second.output()).toMatch(/using the embedded PostgreSQL another local process started/);

    first.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(first.output()).toMatch(/left the embedded PostgreSQL running: another local process still uses it/);
    await second.waitForStatus("/readyz", 200, 5000);

    // The CLI joins and leaves too, without stopping the server under the service.
    const cli = await runToCompletion(["bin/observing-jobs.js", "migrate"], { ...settings, LOG_LEVEL: "warn" });
    expect(cli.code, cli.stderr).toBe(0);
    await second.waitForStatus("/readyz", 200, 5000);

    second.killGroup("SIGINT");
    expect(await second.exited).toBe(0);
    expect(second.output()).toMatch(/stopped the embedded PostgreSQL/);
    expect(await portIsOpen(pgPort)).toBe(false);
  });
});
