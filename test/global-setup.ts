/**
 * Once per test run: find PostgreSQL (TEST_DATABASE_URL, else DATABASE_URL, else an embedded server
 * in a temporary directory), then build a migrated template database that every test file clones.
 */
import { rmSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { pino } from "pino";
import type { TestProject } from "vitest/node";
import { makeDatabase } from "../src/db/database.ts";
import { startEmbeddedPostgres, stopEmbeddedPostgresNow } from "../src/db/embedded-postgres.ts";
import { migrateDatabase } from "../src/db/migrate.ts";
import { freePort } from "./helpers/ports.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** A connection string with rights to create databases. */
    adminDatabaseUrl: string;
    /** The migrated template every test database is cloned from. */
    templateDatabase: string;
  }
}

export default async function setup(project: TestProject) {
  const logger = pino({ level: "warn" });
  const teardown: Array<() => Promise<void>> = [];
  let adminUrl = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  if (!adminUrl) {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-test-pg-"));
    // The server runs in a process group of its own, so Ctrl-C (which ends vitest without its
    // teardown) would not reach it; nor does teardown run when this setup fails half way. Stop it
    // as the process exits, however it exits.
    const stopNow = () => {
      stopEmbeddedPostgresNow(path.join(dataDir, "data"));
      rmSync(dataDir, { recursive: true, force: true });
    };
    process.once("exit", stopNow);
    // As root, PostgreSQL runs as the `postgres` user, which must be able to reach its data directory.
    await chmod(dataDir, 0o755);
    const server = await startEmbeddedPostgres({ dataDir: path.join(dataDir, "data"), port: await freePort(), logger, database: "postgres" });
    adminUrl = server.url;
    teardown.push(async () => {
      process.off("exit", stopNow);
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    });
    process.stdout.write(`tests use an embedded PostgreSQL (set TEST_DATABASE_URL to use another server)\n`);
  }

  const template = `observing_jobs_template_${process.pid}`;
  await admin(adminUrl, async (client) => {
    await client.query(`drop database if exists ${template} with (force)`);
    await client.query(`create database ${template}`);
  });
  const database = makeDatabase(withDatabase(adminUrl, template), { maxConnections: 2, logger });
  try {
    await migrateDatabase(database.pool, database.db, logger);
  } finally {
    await database.close();
  }
  teardown.push(() => admin(adminUrl, (client) => client.query(`drop database if exists ${template} with (force)`).then(() => {})));

  project.provide("adminDatabaseUrl", adminUrl);
  project.provide("templateDatabase", template);
  return async () => {
    for (const step of teardown.reverse()) await step();
  };
}

async function admin(url: string, work: (client: pg.Client) => Promise<void>): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
  }
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

