/**
 * The one module that reads the environment. `loadConfig` turns `process.env`
 * into a frozen, typed `Config` once at start-up; everything else receives that
 * object. A bad value fails fast with a message naming the variable.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv, type ErrorObject } from "ajv";
import Type, { type Static } from "typebox";

/** The folder holding package.json, crontab and tasks/ (also when running from dist/). */
export const projectRoot = findProjectRoot();

/** GBIF Backbone Taxonomy: the integer keys Wikidata's P846 and existing rows use. */
export const GBIF_BACKBONE_CHECKLIST_KEY = "d7dddbf4-2cf0-4f39-9b2a-bb099caae36c";

const Int = (options: { minimum?: number; maximum?: number; default: number }) => Type.Integer(options);

/** Every variable the service reads, with its default. The README's configuration table mirrors this. */
const EnvSchema = Type.Object({
  NODE_ENV: Type.Enum(["development", "production", "test"], { default: "development" }),
  DATABASE_URL: Type.Optional(Type.String({ pattern: "^postgres(ql)?://" })),
  EMBEDDED_POSTGRES_DIR: Type.String({ minLength: 1, default: ".data/postgres" }),
  EMBEDDED_POSTGRES_PORT: Int({ minimum: 1, maximum: 65535, default: 54329 }),
  MIGRATE_ON_START: Type.Optional(Type.Boolean()),
  PORT: Int({ minimum: 0, maximum: 65535, default: 8080 }),
  HOST: Type.String({ minLength: 1, default: "0.0.0.0" }),
  WORKER_CONCURRENCY: Int({ minimum: 1, maximum: 200, default: 10 }),
  WORKER_POLL_INTERVAL_MS: Int({ minimum: 100, maximum: 600_000, default: 2000 }),
  CRONTAB_FILE: Type.String({ minLength: 1, default: "crontab" }),
  LOG_LEVEL: Type.Enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], { default: "info" }),
  LOG_FORMAT: Type.Optional(Type.Enum(["json", "pretty"])),
  GBIF_BASE_URL: Type.String({ pattern: "^https?://", default: "https://api.gbif.org" }),
  GBIF_CHECKLIST_KEY: Type.String({ minLength: 1, default: GBIF_BACKBONE_CHECKLIST_KEY }),
  GBIF_TIMEOUT_MS: Int({ minimum: 1, maximum: 300_000, default: 10_000 }),
  GBIF_CONCURRENCY: Int({ minimum: 1, maximum: 20, default: 2 }),
  HISTORY_RETENTION_DAYS: Int({ minimum: 0, maximum: 3650, default: 14 }),
  HISTORY_DEAD_RETENTION_DAYS: Int({ minimum: 0, maximum: 3650, default: 90 }),
  HEARTBEAT_INTERVAL_MS: Int({ minimum: 100, maximum: 600_000, default: 10_000 }),
  RESCUE_AFTER_MS: Int({ minimum: 500, maximum: 86_400_000, default: 60_000 }),
  SWEEP_INTERVAL_MS: Int({ minimum: 100, maximum: 600_000, default: 5000 }),
  SHUTDOWN_ABORT_AFTER_MS: Int({ minimum: 0, maximum: 3_600_000, default: 6000 }),
  SHUTDOWN_TIMEOUT_MS: Int({ minimum: 1, maximum: 3_600_000, default: 8500 }),
  K_REVISION: Type.Optional(Type.String({ minLength: 1 })),
  GBIF_USER_AGENT: Type.String({
    minLength: 1,
    default: "observing-jobs/0.1 (biodiversity-observations job service; ops@observing.example)",
  }),
});
type Env = Static<typeof EnvSchema>;

/** Variables whose values never appear in messages. */
const SECRET_VARIABLES = new Set<string>([]);
/** Variables that may carry a password inside a URL. */
const URL_VARIABLES = new Set(["DATABASE_URL"]);

export interface Config {
  readonly env: Env["NODE_ENV"];
  readonly database: {
    /** Connection string of the job database; unset outside production means "start the embedded PostgreSQL". */
    readonly url: string | undefined;
    readonly embedded: { readonly dataDir: string; readonly port: number };
    /** Run graphile-worker's and the service's migrations at start-up (default: on except in production). */
    readonly migrateOnStart: boolean;
  };
  readonly http: { readonly host: string; readonly port: number };
  readonly worker: {
    readonly concurrency: number;
    readonly pollIntervalMs: number;
    readonly crontabFile: string;
  };
  readonly log: { readonly level: Env["LOG_LEVEL"]; readonly format: "json" | "pretty" };
  readonly history: {
    /** Days succeeded and cancelled jobs stay in history. */
    readonly retentionDays: number;
    /** Days dead and discarded jobs stay (dead ones in the dead-letter too). */
    readonly deadRetentionDays: number;
  };
  readonly reliability: {
    /** How often each worker pool records that it is alive. */
    readonly heartbeatIntervalMs: number;
    /** A pool whose heartbeat is older than this (database time) is dead and its jobs are released. */
    readonly rescueAfterMs: number;
    /** How often one instance looks for dead pools. */
    readonly sweepIntervalMs: number;
    /** After SIGTERM, running jobs' abort signal fires at this point and their attempt is interrupted. */
    readonly shutdownAbortAfterMs: number;
    /** After SIGTERM, jobs still running are released at this point; the process exits a second later at most. */
    readonly shutdownTimeoutMs: number;
    /** Cloud Run's revision name (K_REVISION), recorded with heartbeats. */
    readonly revision: string | null;
  };
  readonly gbif: {
    readonly baseUrl: string;
    readonly checklistKey: string;
    readonly timeoutMs: number;
    readonly concurrency: number;
    readonly userAgent: string;
  };
}

export class ConfigError extends Error {
  override name = "ConfigError";
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration: ${problems.join("; ")}`);
    this.problems = problems;
  }
}

const ajv = new Ajv({ allErrors: true, coerceTypes: true, useDefaults: true, strict: false });
const validateEnv = ajv.compile<Env>(EnvSchema);

/** Pure: environment variables in, frozen config out (or a ConfigError naming every bad variable). */
export function parseConfig(environment: Record<string, string | undefined>): Config {
  const names = Object.keys(EnvSchema.properties);
  const raw: Record<string, string> = {};
  for (const name of names) {
    const value = environment[name];
    // An empty variable means "not set", as shells and Cloud Run treat it.
    if (value !== undefined && value !== "") raw[name] = value;
  }
  const env: Record<string, unknown> = { ...raw };
  if (!validateEnv(env)) {
    throw new ConfigError((validateEnv.errors ?? []).map((error) => describe(error, raw)));
  }
  const problems: string[] = [];
  if (env.NODE_ENV === "production" && !env.DATABASE_URL) {
    problems.push("DATABASE_URL is required when NODE_ENV=production (the embedded PostgreSQL is for development)");
  }
  if (env.RESCUE_AFTER_MS < 2 * env.HEARTBEAT_INTERVAL_MS) {
    // One late heartbeat must not make a live pool look dead.
    problems.push(`RESCUE_AFTER_MS must be at least twice HEARTBEAT_INTERVAL_MS (${env.HEARTBEAT_INTERVAL_MS}), got ${env.RESCUE_AFTER_MS}`);
  }
  if (env.SHUTDOWN_ABORT_AFTER_MS >= env.SHUTDOWN_TIMEOUT_MS) {
    problems.push(`SHUTDOWN_ABORT_AFTER_MS must be less than SHUTDOWN_TIMEOUT_MS (${env.SHUTDOWN_TIMEOUT_MS}), got ${env.SHUTDOWN_ABORT_AFTER_MS}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return deepFreeze({
    env: env.NODE_ENV,
    database: {
      url: env.DATABASE_URL,
      embedded: { dataDir: path.resolve(projectRoot, env.EMBEDDED_POSTGRES_DIR), port: env.EMBEDDED_POSTGRES_PORT },
      migrateOnStart: env.MIGRATE_ON_START ?? env.NODE_ENV !== "production",
    },
    http: { host: env.HOST, port: env.PORT },
    worker: {
      concurrency: env.WORKER_CONCURRENCY,
      pollIntervalMs: env.WORKER_POLL_INTERVAL_MS,
      crontabFile: path.resolve(projectRoot, env.CRONTAB_FILE),
    },
    log: {
      level: env.LOG_LEVEL,
      format: env.LOG_FORMAT ?? (env.NODE_ENV === "production" || !process.stdout.isTTY ? "json" : "pretty"),
    },
    history: { retentionDays: env.HISTORY_RETENTION_DAYS, deadRetentionDays: env.HISTORY_DEAD_RETENTION_DAYS },
    reliability: {
      heartbeatIntervalMs: env.HEARTBEAT_INTERVAL_MS,
      rescueAfterMs: env.RESCUE_AFTER_MS,
      sweepIntervalMs: env.SWEEP_INTERVAL_MS,
      shutdownAbortAfterMs: env.SHUTDOWN_ABORT_AFTER_MS,
      shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
      revision: env.K_REVISION ?? null,
    },
    gbif: {
      baseUrl: env.GBIF_BASE_URL.replace(/\/+$/, ""),
      checklistKey: env.GBIF_CHECKLIST_KEY,
      timeoutMs: env.GBIF_TIMEOUT_MS,
      concurrency: env.GBIF_CONCURRENCY,
      userAgent: env.GBIF_USER_AGENT,
    },
  });
}

/** Reads `process.env` once. Call from entry points only. */
export function loadConfig(): Config {
  return parseConfig(process.env);
}

/** A connection string with its password replaced, safe for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "[unparseable URL]";
  }
}

function describe(error: ErrorObject, raw: Record<string, string>): string {
  const name = error.instancePath.replace(/^\//, "").split("/")[0] || String(error.params.missingProperty ?? "?");
  const value = raw[name];
  const expected =
    error.keyword === "pattern" && name.endsWith("_URL")
      ? `must be a URL starting with ${error.params.pattern === "^https?://" ? "http:// or https://" : "postgres://"}`
      : error.keyword === "enum"
        ? `must be one of ${(error.params.allowedValues as string[]).join(", ")}`
        : error.message;
  return `${name} ${expected}, got ${value === undefined ? "nothing" : JSON.stringify(redactValue(name, value))}`;
}

function redactValue(name: string, value: string): string {
  if (SECRET_VARIABLES.has(name)) return "[redacted]";
  if (URL_VARIABLES.has(name)) return redactUrl(value);
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

function findProjectRoot(): string {
  // src/config.ts in development, dist/src/config.js in the image: both sit under the root.
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.basename(path.dirname(here)) === "dist" ? path.resolve(here, "../..") : path.resolve(here, "..");
}
