/**
 * Statements compiled once and kept prepared on each of the service's connections, for the few
 * the service sends per request (the single-job enqueue). Kysely compiles every statement on every
 * call and cannot name one; node-postgres prepares a statement once per connection when the query
 * carries a name, after which PostgreSQL skips parsing and planning it (what it saves per job:
 * docs/BENCHMARKS.md, "Single-job enqueue").
 *
 * graphile-worker already sends its fetch and completion as named statements (its
 * `preparedStatements` option, on by default), so this asks nothing new of the connection: it
 * must keep a session's prepared statements (not PgBouncer in transaction mode before 1.21).
 *
 * The name travels from the statement to the connection by its text: `prepareStatement` registers
 * the compiled text here, and the service's pools' client (`NamingClient`) sends a registered
 * text under its name. On any other connection (an application's own pool, handed to the
 * enqueue helper) the same statement runs unnamed, with the same result.
 */
import { createHash } from "node:crypto";
import { CompiledQuery, type Kysely, type QueryResult, type RawBuilder } from "kysely";
import pg from "pg";

// Any Kysely instance or transaction: the statements name their tables themselves.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyKysely = Kysely<any>;

/** Registered statement texts and their names. */
const namesByText = new Map<string, string>();

/** One statement's values, by the names its builder gave them. */
export type StatementValues = Record<string, unknown>;

export interface PreparedStatement<V extends StatementValues, R> {
  execute(executor: AnyKysely, values: V): Promise<QueryResult<R>>;
}

/**
 * Stands in for a value while the statement is compiled; its position in the parameters says where
 * the value goes. Read as a value (into text, JSON or a number) it throws, since the statement would
 * otherwise hold the stand-in instead of each call's value; a branch on it cannot be caught here.
 */
class Slot {
  readonly key: string;
  constructor(key: string) {
    this.key = key;
  }
  #misread(): never {
    throw new Error(`prepared statement: the stand-in for '${this.key}' was read as a value; bind it as \${values.${this.key}} instead`);
  }
  toString(): never {
    return this.#misread();
  }
  valueOf(): never {
    return this.#misread();
  }
  toJSON(): never {
    return this.#misread();
  }
  [Symbol.toPrimitive](): never {
    return this.#misread();
  }
}

/** The builder's `values`: a stand-in for each key it reads. */
function standIns<V extends StatementValues>(): V {
  return new Proxy({} as V, {
    get(_target, key) {
      if (typeof key === "symbol") throw new Error(`prepared statement: values are named by strings, not ${String(key)}`);
      return new Slot(key);
    },
  });
}

/**
 * A statement built once by `build`, whose argument stands in for the values (each `${values.x}`
 * becomes a bind parameter), compiled on its first execution and sent from then on as its text
 * plus the values in the order the text binds them. The builder must not branch on a value: it
 * sees only stand-ins.
 */
export function prepareStatement<V extends StatementValues, R>(build: (values: V) => RawBuilder<R>): PreparedStatement<V, R> {
  let compiled: { text: string; keys: string[] } | undefined;
  const compile = (executor: AnyKysely) => {
    const query = build(standIns<V>()).compile(executor);
    const keys = query.parameters.map((parameter, index) => {
      if (!(parameter instanceof Slot)) throw new Error(`prepared statement: parameter $${index + 1} is not one of the builder's values`);
      return parameter.key;
    });
    namesByText.set(query.sql, `observing_jobs_${createHash("sha256").update(query.sql).digest("hex").slice(0, 16)}`);
    return { text: query.sql, keys };
  };
  return {
    async execute(executor, values) {
      compiled ??= compile(executor);
      const { text, keys } = compiled;
      return executor.executeQuery(CompiledQuery.raw(text, keys.map((key) => values[key])));
    },
  };
}

/** The client of the service's pools: a registered statement text goes out under its name. */
export class NamingClient extends pg.Client {
  override query(...args: unknown[]): never {
    const [text] = args;
    const name = typeof text === "string" ? namesByText.get(text) : undefined;
    // node-postgres takes a query config in place of the text; the values stay where they are.
    if (name) args[0] = { name, text };
    return (super.query as (...a: unknown[]) => never)(...args);
  }
}
