import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";
import { describe, expect } from "vitest";
import { makeDatabase, type DatabaseHandle } from "../../src/db/database.ts";
import { prepareStatement } from "../../src/db/prepared-statements.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { test } from "../helpers/env.ts";

/** The named statements of the one connection a single-connection handle holds. */
async function preparedHere(db: DatabaseHandle["db"]): Promise<Array<{ name: string; statement: string }>> {
  const { rows } = await sql<{ name: string; statement: string }>`select name, statement from pg_prepared_statements order by name`.execute(db);
  return rows;
}

describe("prepared statements", () => {
  test("the single-job enqueue is prepared once per service connection and then sent by name", async ({ env }) => {
    const handle = makeDatabase(env.database.url, { maxConnections: 1, logger: env.logger });
    try {
      const first = await enqueueJob(handle.db, env.registry, "resolve_taxa", { limit: 5 }, { runAt: new Date("2100-01-01") });
      const second = await enqueueJob(handle.db, env.registry, "resolve_taxa", { limit: 7 }, { queueName: "q1", priority: 3 });
      const prepared = await preparedHere(handle.db);
      expect(prepared).toHaveLength(1);
      expect(prepared[0]!.name).toMatch(/^observing_jobs_[0-9a-f]{16}$/);
      expect(prepared[0]!.statement).toContain("graphile_worker.add_job(");

      // Each execution bound its own values: the jobs and their records say so.
      const { rows } = await sql<{ id: string; queue_name: string | null; priority: number; run_at: Date }>`
        select id::text, queue_name, priority, run_at from graphile_worker.jobs where id = any(${[first.id, second.id]}::bigint[]) order by id`.execute(handle.db);
      expect(rows.map((row) => [row.id, row.queue_name, row.priority])).toEqual([
        [first.id, null, 0],
        [second.id, "q1", 3],
      ]);
      expect(rows[0]!.run_at.toISOString()).toBe("2100-01-01T00:00:00.000Z");
      const records = await env.db
        .selectFrom("observing_jobs.job_records")
        .select(["id", "task", "queue", "source", "priority", "payload"])
        .where("id", "in", [first.id, second.id])
        .orderBy("id")
        .execute();
      expect(records).toEqual([
        { id: first.id, task: "resolve_taxa", queue: null, source: "app", priority: 0, payload: { force: false, limit: 5 } },
        { id: second.id, task: "resolve_taxa", queue: "q1", source: "app", priority: 3, payload: { force: false, limit: 7 } },
      ]);
    } finally {
      await handle.close();
    }
  });

  test("a keyed job's mode and the origin are bound too: unsafe_dedupe keeps the waiting job's payload, replace takes the new one", async ({ env }) => {
    const handle = makeDatabase(env.database.url, { maxConnections: 1, logger: env.logger });
    try {
      const parent = await enqueueJob(handle.db, env.registry, "resolve_taxa", {}, { runAt: new Date("2100-01-01") });
      const origin = { source: "http", actor: "operator@example.org", traceId: "0af7651916cd43dd8448eb211c80319c", parentId: parent.id } as const;
      const options = (jobKey: string, jobKeyMode: "unsafe_dedupe" | "replace") => ({ jobKey, jobKeyMode, runAt: new Date("2100-01-01") });
      const kept = await enqueueJob(handle.db, env.registry, "resolve_taxa", { limit: 11 }, options("k-dedupe", "unsafe_dedupe"), origin);
      expect((await enqueueJob(handle.db, env.registry, "resolve_taxa", { limit: 12 }, options("k-dedupe", "unsafe_dedupe"), origin)).id).toBe(kept.id);
      const replaced = await enqueueJob(handle.db, env.registry, "resolve_taxa", { limit: 21 }, options("k-replace", "replace"), origin);
      expect((await enqueueJob(handle.db, env.registry, "resolve_taxa", { limit: 22 }, options("k-replace", "replace"), origin)).id).toBe(replaced.id);
      const records = await env.db
        .selectFrom("observing_jobs.job_records")
        .select(["id", "payload", "source", "enqueued_by", "trace_id", "parent_id", "job_key"])
        .where("id", "in", [kept.id, replaced.id])
        .orderBy("id")
        .execute();
      const recorded = { source: "http", enqueued_by: "operator@example.org", trace_id: origin.traceId, parent_id: parent.id };
      expect(records).toEqual([
        { id: kept.id, payload: { force: false, limit: 11 }, job_key: "k-dedupe", ...recorded },
        { id: replaced.id, payload: { force: false, limit: 22 }, job_key: "k-replace", ...recorded },
      ]);
    } finally {
      await handle.close();
    }
  });

  test("on a connection that is not the service's (an application's own pool) the same statement runs unnamed", async ({ env }) => {
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: env.database.url, max: 1 }) }) });
    try {
      const job = await enqueueJob(db, env.registry, "resolve_taxa", { limit: 9 });
      expect(await preparedHere(db as DatabaseHandle["db"])).toEqual([]);
      const record = await env.db.selectFrom("observing_jobs.job_records").select(["payload"]).where("id", "=", job.id).executeTakeFirstOrThrow();
      expect(record.payload).toEqual({ force: false, limit: 9 });
    } finally {
      await db.destroy();
    }
  });

  test("values are bound by name, in the order the text uses them, a value used twice bound twice", async ({ env }) => {
    const statement = prepareStatement<{ a: string; b: number }, { x: number; y: string; z: string }>(
      (v) => sql`select ${v.b}::int + 1 as x, ${v.a}::text as y, ${v.a}::text || '!' as z`,
    );
    expect((await statement.execute(env.db, { a: "one", b: 1 })).rows).toEqual([{ x: 2, y: "one", z: "one!" }]);
    expect((await statement.execute(env.db, { a: "two\u00e9", b: 41 })).rows).toEqual([{ x: 42, y: "two\u00e9", z: "two\u00e9!" }]);
  });

  test("a builder that binds anything but its values, or reads a value as more than a stand-in, is refused when compiled", async ({ env }) => {
    const constant = prepareStatement<{ a: string }, unknown>((v) => sql`select ${v.a}::text, ${1}::int`);
    await expect(constant.execute(env.db, { a: "x" })).rejects.toThrow("parameter $2 is not one of the builder's values");
    // A stand-in turned into text would put "[object Object]" into the statement, or bind it.
    const inText = prepareStatement<{ a: string }, unknown>((v) => sql.raw(`select '${v.a}'`));
    await expect(inText.execute(env.db, { a: "x" })).rejects.toThrow("the stand-in for 'a' was read as a value");
    const concatenated = prepareStatement<{ a: string }, unknown>((v) => sql`select ${v.a + "!"}::text`);
    await expect(concatenated.execute(env.db, { a: "x" })).rejects.toThrow("the stand-in for 'a' was read as a value");
    const serialized = prepareStatement<{ a: object }, unknown>((v) => sql`select ${JSON.stringify(v.a)}::json`);
    await expect(serialized.execute(env.db, { a: {} })).rejects.toThrow("the stand-in for 'a' was read as a value");
  });
});
