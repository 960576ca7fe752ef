/**
 * The benchmark's databases: the server (DATABASE_URL, or an embedded PostgreSQL in a temporary
 * folder), one migrated template per system, and a fresh clone of it for every system in every
 * round, so neither system inherits the other's rows, dead tuples or statistics. Raw
 * graphile-worker's template holds graphile-worker's schema alone: on the service's, raw's inserts
 * and completions would fire the service's triggers on graphile-worker's jobs table (the pause
 * flags, the history of jobs without a record) and measure raw with the service's costs (until
 * 2026-12-03 they did: raw drained 2-4 times slower than on its own schema). Every database
 * created here is dropped by `close()`.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Logger, runMigrations } from "graphile-worker";
import pg from "pg";
import { pino } from "pino";
import { makeDatabase } from "../../src/db/database.ts";
import { startEmbeddedPostgres } from "../../src/db/embedded-postgres.ts";
import { migrateDatabase } from "../../src/db/migrate.ts";
import { freePort } from "../../test/helpers/ports.ts";

/** The two systems a run compares. */
export type System = "raw" | "service";

export interface BenchDatabase {
  name: string;
  url: string;
}

/** Counters of one database from pg_stat_database, plus the connections open to it now. */
export interface DatabaseCounters {
  transactions: number;
  tuplesReturned: number;
  tuplesFetched: number;
  tuplesWritten: number;
  connections: number;
}

export class BenchServer {
  readonly adminUrl: string;
  readonly embedded: boolean;
  readonly #admin: pg.Client;
  readonly #prefix = `observing_jobs_bench_${process.pid}`;
  readonly #created: string[] = [];
  readonly #stopEmbedded: () => Promise<void>;
  #clones = 0;

  private constructor(adminUrl: string, admin: pg.Client, embedded: boolean, stopEmbedded: () => Promise<void>) {
    this.adminUrl = adminUrl;
    this.#admin = admin;
    this.embedded = embedded;
    this.#stopEmbedded = stopEmbedded;
  }

  /** The server at `databaseUrl` (any database on it with the right to create databases), else an embedded one. */
  static async open(databaseUrl: string | undefined): Promise<BenchServer> {
    let stopEmbedded = async () => {};
    let adminUrl = databaseUrl;
    if (!adminUrl) {
      const dataDir = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-bench-pg-"));
      // As root, PostgreSQL runs as the `postgres` user, which must be able to reach its data directory.
      await chmod(dataDir, 0o755);
      try {
        const server = await startEmbeddedPostgres({ dataDir: path.join(dataDir, "data"), port: await freePort(), logger: pino({ level: "warn" }), database: "postgres" });
        adminUrl = server.url;
        stopEmbedded = async () => {
          await server.stop();
          await rm(dataDir, { recursive: true, force: true });
        };
      } catch (error) {
        await rm(dataDir, { recursive: true, force: true });
        throw error;
      }
    }
    const admin = new pg.Client({ connectionString: adminUrl, application_name: "observing-jobs-bench" });
    try {
      await admin.connect();
    } catch (error) {
      await stopEmbedded();
      throw error;
    }
    return new BenchServer(adminUrl, admin, !databaseUrl, stopEmbedded);
  }

  templateName(system: System): string {
    return `${this.#prefix}_template_${system}`;
  }

  /**
   * The templates the clones start from: the service's with graphile-worker's and the service's
   * migrations applied, raw's with graphile-worker's alone (as a graphile-worker user's database).
   */
  async createTemplates(): Promise<void> {
    await this.#create(`create database ${this.templateName("service")}`, this.templateName("service"));
    const database = makeDatabase(this.urlOf(this.templateName("service")), { maxConnections: 2, logger: pino({ level: "warn" }) });
    try {
      await migrateDatabase(database.pool, database.db, pino({ level: "warn" }));
    } finally {
      await database.close();
    }
    await this.#create(`create database ${this.templateName("raw")}`, this.templateName("raw"));
    await runMigrations({ connectionString: this.urlOf(this.templateName("raw")), logger: new Logger(() => () => {}) });
  }

  async clone(label: string, system: System): Promise<BenchDatabase> {
    const name = `${this.#prefix}_${++this.#clones}_${label.replaceAll(/[^a-z0-9]+/g, "_")}`;
    await this.#create(`create database ${name} template ${this.templateName(system)}`, name);
    return { name, url: this.urlOf(name) };
  }

  async drop(database: BenchDatabase): Promise<void> {
    await this.#admin.query(`drop database if exists ${database.name} with (force)`);
    this.#created.splice(this.#created.indexOf(database.name), 1);
  }

  urlOf(name: string): string {
    const url = new URL(this.adminUrl);
    url.pathname = `/${name}`;
    return url.toString();
  }

  async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    return (await this.#admin.query<R>(text, values)).rows;
  }

  /** Read from the admin connection, so reading them adds nothing to the database measured. */
  async counters(name: string): Promise<DatabaseCounters> {
    // Without this a transaction sees a snapshot of the statistics taken at its first read.
    await this.#admin.query("select pg_stat_clear_snapshot()");
    const [row] = await this.query<{ transactions: string; returned: string; fetched: string; written: string; connections: number }>(
      `select xact_commit + xact_rollback as transactions, tup_returned as returned, tup_fetched as fetched,
              tup_inserted + tup_updated + tup_deleted as written,
              (select count(*)::int from pg_stat_activity where datname = $1) as connections
       from pg_stat_database where datname = $1`,
      [name],
    );
    if (!row) throw new Error(`no statistics for database ${name}`);
    return {
      transactions: Number(row.transactions),
      tuplesReturned: Number(row.returned),
      tuplesFetched: Number(row.fetched),
      tuplesWritten: Number(row.written),
      connections: row.connections,
    };
  }

  async version(): Promise<string> {
    const [row] = await this.query<{ version: string }>("select version()");
    return row!.version.replace(/ on .*/, "");
  }

  /** Drops every database this run created, then stops the embedded server if there is one. */
  async close(): Promise<void> {
    try {
      for (const name of this.#created.splice(0).reverse()) {
        await this.#admin.query(`drop database if exists ${name} with (force)`).catch((error: unknown) => {
          process.stderr.write(`could not drop ${name}: ${(error as Error).message}\n`);
        });
      }
      await this.#admin.end();
    } finally {
      await this.#stopEmbedded();
    }
  }

  async #create(statement: string, name: string): Promise<void> {
    await this.#admin.query(`drop database if exists ${name} with (force)`);
    await this.#admin.query(statement);
    this.#created.push(name);
  }
}

