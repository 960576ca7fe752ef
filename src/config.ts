/**
 * The one module that reads the environment. `loadConfig` turns `process.env`
 * into a frozen, typed `Config` once at start-up; everything else receives that
 * object. A bad value fails fast with a message naming the variable.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv, type ErrorObject } from "ajv";
import Type, { type Static } from "typebox";
import { GBIF_BACKBONE_CHECKLIST_KEY } from "./upstream/gbif.ts";
import { STANDARD_THUMBNAIL_WIDTHS } from "./upstream/wikidata.ts";

/** The folder holding package.json, crontab and tasks/ (also when running from dist/). */
export const projectRoot = findProjectRoot();

/** The version in package.json (present in a checkout and in the image). */
export const SERVICE_VERSION = (JSON.parse(readFileSync(path.join(projectRoot, "package.json"), "utf8")) as { version: string }).version;

const DEFAULT_USER_AGENT = "observing-jobs/0.1 (biodiversity-observations job service; ops@observing.example)";

const Int = (options: { minimum?: number; maximum?: number; default: number }) => Type.Integer(options);

/**
 * The main runner's default local queue: this many jobs fetched per slot in one query, at most
 * MAX_DEFAULT_LOCAL_QUEUE. graphile-worker fetches again only once the local queue is empty, and a
 * fetch costs the database a fixed part per statement plus a part per job, so a bigger batch drains
 * faster; but a fetched job waits, locked by this instance, behind up to this many jobs per slot
 * while another instance may be idle. Measured (docs/BENCHMARKS.md, "The database's side of a drain"): 20,000
 * no-op jobs drained at ~9,500 jobs/s with 10 per slot, ~10,700 with 20 and ~11,000 with 50, so 20
 * takes most of the gain for twice the wait of 10. Safe because a crash leaves nothing stuck: the
 * sweeper gives a dead pool's queued-but-not-started jobs back with their attempt unspent.
 */
const LOCAL_QUEUE_PER_SLOT = 20;
const MAX_DEFAULT_LOCAL_QUEUE = 1000;

/** A string that must match `pattern`; `mustBe` is what the error says it must be when it does not. */
const Matching = (pattern: string, mustBe: string, options: { default?: string; minLength?: number } = {}) =>
  Type.String({ pattern, ...options, messages: { pattern: mustBe } });
const HttpUrl = (defaultUrl: string) => Matching("^https?://", "must be a URL starting with http:// or https://", { default: defaultUrl });

/**
 * Every variable the service reads, with its default, grouped like the sections of `Config`; the
 * README's configuration table mirrors this. A variable whose plain schema error would not say what
 * is expected carries its own message (`messages`, by failing keyword) beside its schema.
 */
const EnvSchema = Type.Object({
  // database
  NODE_ENV: Type.Enum(["development", "production", "test"], { default: "development" }),
  DATABASE_URL: Type.Optional(Matching("^postgres(ql)?://", "must be a URL starting with postgres://")),
  EMBEDDED_POSTGRES_DIR: Type.String({ minLength: 1, default: ".data/postgres" }),
  EMBEDDED_POSTGRES_PORT: Int({ minimum: 1, maximum: 65535, default: 54329 }),
  MIGRATE_ON_START: Type.Optional(Type.Boolean()),
  // http
  PORT: Int({ minimum: 0, maximum: 65535, default: 8080 }),
  HOST: Type.String({ minLength: 1, default: "0.0.0.0" }),
  HTTP_BODY_LIMIT_BYTES: Int({ minimum: 1024, maximum: 10 * 1024 * 1024, default: 256 * 1024 }),
  HTTP_REQUEST_TIMEOUT_MS: Int({ minimum: 1000, maximum: 600_000, default: 30_000 }),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: Int({ minimum: 1000, maximum: 600_000, default: 72_000 }),
  HTTP_RATE_LIMIT_MAX: Int({ minimum: 0, maximum: 1_000_000, default: 120 }),
  HTTP_RATE_LIMIT_WINDOW_MS: Int({ minimum: 1000, maximum: 3_600_000, default: 60_000 }),
  // auth
  API_TOKENS: Type.Optional(Matching("^[^,\\s]{16,}(,[^,\\s]{16,})*$", "must be comma-separated tokens of at least 16 characters without spaces")),
  METRICS_TOKEN: Type.Optional(Matching("^\\S{16,}$", "must be one token of at least 16 characters without spaces")),
  AUTH_OIDC_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
  AUTH_OIDC_JWKS_URL: HttpUrl("https://www.googleapis.com/oauth2/v3/certs"),
  AUTH_OIDC_ISSUERS: Type.String({ minLength: 1, default: "https://accounts.google.com,accounts.google.com" }),
  AUTH_ALLOWED_CALLERS: Type.Optional(Matching("^[^,\\s@]+@[^,\\s@]+(,[^,\\s@]+@[^,\\s@]+)*$", "must be comma-separated email addresses")),
  AUTH_DISABLED: Type.Boolean({ default: false }),
  // dashboard
  DASHBOARD_SESSION_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  // worker
  WORKER_CONCURRENCY: Int({ minimum: 1, maximum: 200, default: 10 }),
  WORKER_POLL_INTERVAL_MS: Int({ minimum: 100, maximum: 600_000, default: 2000 }),
  // Unset: LOCAL_QUEUE_PER_SLOT jobs per slot (see the parsed value below); 0 turns it off.
  WORKER_LOCAL_QUEUE_SIZE: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
  CRONTAB_FILE: Type.String({ minLength: 1, default: "crontab" }),
  // log
  LOG_LEVEL: Type.Enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], { default: "info" }),
  LOG_FORMAT: Type.Optional(Type.Enum(["json", "pretty"])),
  GOOGLE_CLOUD_PROJECT: Type.Optional(Type.String({ pattern: "^[a-z][a-z0-9-]{4,28}[a-z0-9]$" })),
  // history
  HISTORY_RETENTION_DAYS: Int({ minimum: 0, maximum: 3650, default: 14 }),
  HISTORY_DEAD_RETENTION_DAYS: Int({ minimum: 0, maximum: 3650, default: 90 }),
  // reliability
  HEARTBEAT_INTERVAL_MS: Int({ minimum: 100, maximum: 600_000, default: 4000 }),
  RESCUE_AFTER_MS: Int({ minimum: 300, maximum: 86_400_000, default: 15_000 }),
  SWEEP_INTERVAL_MS: Int({ minimum: 100, maximum: 600_000, default: 3000 }),
  EVENT_LOOP_STALL_LIMIT_MS: Int({ minimum: 1000, maximum: 86_400_000, default: 300_000 }),
  DATABASE_CONNECT_TIMEOUT_MS: Int({ minimum: 100, maximum: 600_000, default: 10_000 }),
  DATABASE_STATEMENT_TIMEOUT_MS: Int({ minimum: 100, maximum: 86_400_000, default: 30_000 }),
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: Int({ minimum: 100, maximum: 86_400_000, default: 60_000 }),
  DATABASE_KEEPALIVE_IDLE_MS: Int({ minimum: 1000, maximum: 7_200_000, default: 10_000 }),
  SHUTDOWN_ABORT_AFTER_MS: Int({ minimum: 0, maximum: 3_600_000, default: 6000 }),
  SHUTDOWN_TIMEOUT_MS: Int({ minimum: 1, maximum: 3_600_000, default: 8500 }),
  K_REVISION: Type.Optional(Type.String({ minLength: 1 })),
  // gbif
  GBIF_BASE_URL: HttpUrl("https://api.gbif.org"),
  GBIF_CHECKLIST_KEY: Type.String({ minLength: 1, default: GBIF_BACKBONE_CHECKLIST_KEY }),
  GBIF_TIMEOUT_MS: Int({ minimum: 1, maximum: 300_000, default: 10_000 }),
  GBIF_CONCURRENCY: Int({ minimum: 1, maximum: 20, default: 2 }),
  GBIF_USER_AGENT: Type.String({ minLength: 1, default: DEFAULT_USER_AGENT }),
  // wikidata
  WIKIDATA_BASE_URL: HttpUrl("https://www.wikidata.org"),
  WIKIDATA_TIMEOUT_MS: Int({ minimum: 1, maximum: 300_000, default: 10_000 }),
  // Wikimedia's User-Agent policy: client/version (contact) library/version; generic agents get blocked.
  WIKIDATA_USER_AGENT: Type.String({ minLength: 1, pattern: "\\(.*\\)", default: `${DEFAULT_USER_AGENT} undici` }),
  COMMONS_THUMBNAIL_WIDTH: Type.Integer({
    enum: [...STANDARD_THUMBNAIL_WIDTHS],
    default: 330,
    messages: { enum: `must be a standard Wikimedia thumbnail width (${STANDARD_THUMBNAIL_WIDTHS.join(", ")})` },
  }),
  // iucn
  IUCN_BASE_URL: HttpUrl("https://api.iucnredlist.org"),
  IUCN_API_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  IUCN_TIMEOUT_MS: Int({ minimum: 1, maximum: 300_000, default: 10_000 }),
  IUCN_MIN_INTERVAL_MS: Int({ minimum: 0, maximum: 60_000, default: 500 }),
  IUCN_USER_AGENT: Type.String({ minLength: 1, default: DEFAULT_USER_AGENT }),
});
type Env = Static<typeof EnvSchema>;

/** Variables whose values never appear in messages. */
const SECRET_VARIABLES = new Set<string>(["API_TOKENS", "METRICS_TOKEN", "IUCN_API_TOKEN", "DASHBOARD_SESSION_SECRET"]);
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
    /** Time limits of every connection (src/db/database.ts). */
    readonly timeouts: {
      readonly connectTimeoutMs: number;
      /** The service's own statements and graphile-worker's; handlers' statements get their task's time limit instead. */
      readonly statementTimeoutMs: number;
      readonly idleInTransactionTimeoutMs: number;
      /** Idle time before TCP keepalive probes start. */
      readonly keepAliveIdleMs: number;
    };
  };
  readonly http: {
    readonly host: string;
    readonly port: number;
    readonly bodyLimitBytes: number;
    /**
     * A request (headers and body) must have arrived within this, else 408 and the connection closes;
     * a connection that sends nothing is closed after it too. Checked every quarter of it.
     */
    readonly requestTimeoutMs: number;
    /** An idle keep-alive connection is closed after this. */
    readonly keepAliveTimeoutMs: number;
    /** Per caller, per instance: requests to enqueue and action routes within the window; null is no limit. */
    readonly rateLimit: { readonly max: number; readonly windowMs: number } | null;
  };
  readonly auth: {
    /** Only ever true when AUTH_DISABLED=true outside production. */
    readonly disabled: boolean;
    /** Static bearer tokens (development, CI, break-glass). */
    readonly tokens: readonly string[];
    /** A bearer token that opens `GET /metrics` and nothing else (the telemetry sidecar's scraper). */
    readonly metricsToken?: string | undefined;
    /** Google-signed OIDC ID tokens (Cloud Run callers, Cloud Scheduler), or null when not configured. */
    readonly oidc: {
      readonly audience: string;
      readonly jwksUrl: string;
      readonly issuers: readonly string[];
      /** Service-account (or user) emails allowed to call. */
      readonly allowedCallers: readonly string[];
    } | null;
  };
  readonly dashboard: {
    /**
     * Key that signs the dashboard's session cookies; every instance needs the same one. Unset
     * (development only) means a key made per process, so sessions end when it restarts.
     */
    readonly sessionSecret: string | undefined;
  };
  readonly worker: {
    readonly concurrency: number;
    readonly pollIntervalMs: number;
    /**
     * Jobs the main runner fetches and locks at once (graphile-worker's `localQueue.size`); 0 fetches
     * one job per free slot. On by default (LOCAL_QUEUE_PER_SLOT per slot); see docs/BENCHMARKS.md.
     */
    readonly localQueueSize: number;
    readonly crontabFile: string;
  };
  readonly log: {
    readonly level: Env["LOG_LEVEL"];
    readonly format: "json" | "pretty";
    /** The build's version, reported with errors (Cloud Error Reporting's service context). */
    readonly version: string;
    /** Makes log lines' trace fields full Cloud Trace names (`projects/<id>/traces/<trace>`). */
    readonly googleCloudProject: string | undefined;
  };
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
    /** The heartbeat thread stops beating when the main thread has not run for this long (an endless loop). */
    readonly eventLoopStallLimitMs: number;
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
  readonly wikidata: {
    readonly baseUrl: string;
    readonly timeoutMs: number;
    readonly userAgent: string;
    /** Width of the stored Commons thumbnail URLs: one of STANDARD_THUMBNAIL_WIDTHS. */
    readonly thumbnailWidth: number;
  };
  readonly iucn: {
    readonly baseUrl: string;
    /** IUCN Red List API token; unset makes sync_conservation_status fail without calling IUCN. Never logged. */
    readonly token: string | undefined;
    readonly timeoutMs: number;
    /** Least time between the starts of two IUCN calls from this process. */
    readonly minIntervalMs: number;
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

// validateSchema off: checking EnvSchema against JSON Schema's meta-schema first compiles the
// meta-schema itself, about a third of this module's cost at every start (docs/BENCHMARKS.md, "Lean
// process"); the schema is ours, built by TypeBox, and exercised by test/config.test.ts.
const ajv = new Ajv({ allErrors: true, coerceTypes: true, useDefaults: true, strict: false, validateSchema: false });
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
    // One message per variable: the first thing wrong with it (a value that is no integer fails its enum too).
    const firstErrors = new Map<string, ErrorObject>();
    for (const error of validateEnv.errors ?? []) if (!firstErrors.has(variableOf(error))) firstErrors.set(variableOf(error), error);
    throw new ConfigError([...firstErrors].map(([name, error]) => describe(name, error, raw)));
  }
  const problems: string[] = [];
  if (env.NODE_ENV === "production" && !env.DATABASE_URL) {
    problems.push("DATABASE_URL is required when NODE_ENV=production (the embedded PostgreSQL is for development)");
  }
  if (env.NODE_ENV === "production" && env.AUTH_DISABLED) {
    problems.push("AUTH_DISABLED=true is refused when NODE_ENV=production");
  }
  if (env.NODE_ENV === "production" && !env.API_TOKENS && !env.AUTH_OIDC_AUDIENCE) {
    problems.push("API_TOKENS or AUTH_OIDC_AUDIENCE is required when NODE_ENV=production (the jobs API needs authentication)");
  }
  if (env.NODE_ENV === "production" && !env.DASHBOARD_SESSION_SECRET) {
    // Instances behind one URL must all accept the cookie one of them signed.
    problems.push("DASHBOARD_SESSION_SECRET is required when NODE_ENV=production (it signs dashboard sessions on every instance)");
  }
  if (env.AUTH_OIDC_AUDIENCE && !env.AUTH_ALLOWED_CALLERS) {
    // Anyone with a Google account can mint an ID token for any audience: the allowlist is what restricts callers.
    problems.push("AUTH_ALLOWED_CALLERS is required when AUTH_OIDC_AUDIENCE is set");
  }
  if (env.WORKER_LOCAL_QUEUE_SIZE !== undefined && env.WORKER_LOCAL_QUEUE_SIZE > 0 && env.WORKER_LOCAL_QUEUE_SIZE < env.WORKER_CONCURRENCY) {
    // A local queue smaller than the slots it feeds leaves slots idle (graphile-worker only warns).
    problems.push(`WORKER_LOCAL_QUEUE_SIZE must be 0 (off) or at least WORKER_CONCURRENCY (${env.WORKER_CONCURRENCY}), got ${env.WORKER_LOCAL_QUEUE_SIZE}`);
  }
  if (env.RESCUE_AFTER_MS < 3 * env.HEARTBEAT_INTERVAL_MS) {
    // One late or retried heartbeat must not make a live pool look dead, and a pool's lease
    // (RESCUE_AFTER_MS less one interval) must outlast the gap between two beats.
    problems.push(`RESCUE_AFTER_MS must be at least three times HEARTBEAT_INTERVAL_MS (${env.HEARTBEAT_INTERVAL_MS}), got ${env.RESCUE_AFTER_MS}`);
  }
  if (env.EVENT_LOOP_STALL_LIMIT_MS < env.RESCUE_AFTER_MS) {
    problems.push(`EVENT_LOOP_STALL_LIMIT_MS must be at least RESCUE_AFTER_MS (${env.RESCUE_AFTER_MS}), got ${env.EVENT_LOOP_STALL_LIMIT_MS}`);
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
      timeouts: {
        connectTimeoutMs: env.DATABASE_CONNECT_TIMEOUT_MS,
        statementTimeoutMs: env.DATABASE_STATEMENT_TIMEOUT_MS,
        idleInTransactionTimeoutMs: env.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS,
        keepAliveIdleMs: env.DATABASE_KEEPALIVE_IDLE_MS,
      },
    },
    http: {
      host: env.HOST,
      port: env.PORT,
      bodyLimitBytes: env.HTTP_BODY_LIMIT_BYTES,
      requestTimeoutMs: env.HTTP_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: env.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      rateLimit: env.HTTP_RATE_LIMIT_MAX > 0 ? { max: env.HTTP_RATE_LIMIT_MAX, windowMs: env.HTTP_RATE_LIMIT_WINDOW_MS } : null,
    },
    auth: {
      disabled: env.AUTH_DISABLED,
      tokens: list(env.API_TOKENS),
      metricsToken: env.METRICS_TOKEN,
      oidc: env.AUTH_OIDC_AUDIENCE
        ? {
            audience: env.AUTH_OIDC_AUDIENCE,
            jwksUrl: env.AUTH_OIDC_JWKS_URL,
            issuers: list(env.AUTH_OIDC_ISSUERS),
            allowedCallers: list(env.AUTH_ALLOWED_CALLERS).map((email) => email.toLowerCase()),
          }
        : null,
    },
    dashboard: { sessionSecret: env.DASHBOARD_SESSION_SECRET },
    worker: {
      concurrency: env.WORKER_CONCURRENCY,
      pollIntervalMs: env.WORKER_POLL_INTERVAL_MS,
      localQueueSize: env.WORKER_LOCAL_QUEUE_SIZE ?? Math.min(MAX_DEFAULT_LOCAL_QUEUE, LOCAL_QUEUE_PER_SLOT * env.WORKER_CONCURRENCY),
      crontabFile: path.resolve(projectRoot, env.CRONTAB_FILE),
    },
    log: {
      level: env.LOG_LEVEL,
      format: env.LOG_FORMAT ?? (env.NODE_ENV === "production" || !process.stdout.isTTY ? "json" : "pretty"),
      version: SERVICE_VERSION,
      googleCloudProject: env.GOOGLE_CLOUD_PROJECT,
    },
    history: { retentionDays: env.HISTORY_RETENTION_DAYS, deadRetentionDays: env.HISTORY_DEAD_RETENTION_DAYS },
    reliability: {
      heartbeatIntervalMs: env.HEARTBEAT_INTERVAL_MS,
      rescueAfterMs: env.RESCUE_AFTER_MS,
      sweepIntervalMs: env.SWEEP_INTERVAL_MS,
      eventLoopStallLimitMs: env.EVENT_LOOP_STALL_LIMIT_MS,
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
    wikidata: {
      baseUrl: env.WIKIDATA_BASE_URL.replace(/\/+$/, ""),
      timeoutMs: env.WIKIDATA_TIMEOUT_MS,
      userAgent: env.WIKIDATA_USER_AGENT,
      thumbnailWidth: env.COMMONS_THUMBNAIL_WIDTH,
    },
    iucn: {
      baseUrl: env.IUCN_BASE_URL.replace(/\/+$/, ""),
      token: env.IUCN_API_TOKEN,
      timeoutMs: env.IUCN_TIMEOUT_MS,
      minIntervalMs: env.IUCN_MIN_INTERVAL_MS,
      userAgent: env.IUCN_USER_AGENT,
    },
  });
}

/**
 * Reads `process.env` once. Call from entry points only; `adjust` lets one set or default variables
 * before they are parsed (the demo points the upstream clients at its fake servers).
 */
export function loadConfig(adjust: (environment: NodeJS.ProcessEnv) => Record<string, string | undefined> = (environment) => environment): Config {
  return parseConfig(adjust(process.env));
}

/** A connection string with its password replaced, safe for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    // Forms URL cannot parse, such as Cloud SQL's socket form postgresql://user:secret@/db?host=/cloudsql/…
    return url.replace(/(\/\/[^:/@]*):[^@]*@/, "$1:***@");
  }
}

function variableOf(error: ErrorObject): string {
  return error.instancePath.replace(/^\//, "").split("/")[0] || String(error.params.missingProperty ?? "?");
}

function describe(name: string, error: ErrorObject, raw: Record<string, string>): string {
  const value = raw[name];
  const messages = (EnvSchema.properties as Record<string, { messages?: Record<string, string> }>)[name]?.messages;
  const expected =
    messages?.[error.keyword] ??
    (error.keyword === "enum" ? `must be one of ${(error.params.allowedValues as string[]).join(", ")}` : error.message);
  return `${name} ${expected}, got ${value === undefined ? "nothing" : JSON.stringify(redactSetting(name, value))}`;
}

/** A variable's value as an error may show it: secrets hidden, URLs without their password. */
function redactSetting(name: string, value: string): string {
  if (SECRET_VARIABLES.has(name)) return "[redacted]";
  if (URL_VARIABLES.has(name)) return redactUrl(value);
  return value;
}

function list(value: string | undefined): string[] {
  return (value ?? "").split(",").map((item) => item.trim()).filter((item) => item !== "");
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
