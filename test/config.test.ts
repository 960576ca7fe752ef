import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig, redactUrl } from "../src/config.ts";
import { GBIF_BACKBONE_CHECKLIST_KEY } from "../src/upstream/gbif.ts";

describe("parseConfig", () => {
  it("gives production-ready defaults and a frozen object", () => {
    const config = parseConfig({ DATABASE_URL: "postgres://app@db/observations" });
    expect(config).toMatchObject({
      env: "development",
      http: { port: 8080, host: "0.0.0.0" },
      worker: { concurrency: 10, pollIntervalMs: 2000 },
      database: { url: "postgres://app@db/observations", migrateOnStart: true },
      gbif: { baseUrl: "https://api.gbif.org", checklistKey: GBIF_BACKBONE_CHECKLIST_KEY, concurrency: 2, timeoutMs: 10_000 },
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.gbif)).toBe(true);
  });

  it("reads every documented variable", () => {
    const config = parseConfig({
      NODE_ENV: "production",
      DATABASE_URL: "postgresql://app:pw@db:5432/observations",
      API_TOKENS: "a-long-enough-token-1,a-long-enough-token-2",
      DASHBOARD_SESSION_SECRET: "a-session-secret-of-at-least-32-characters",
      PORT: "9000",
      WORKER_CONCURRENCY: "3",
      GBIF_BASE_URL: "http://gbif.test/",
      GBIF_CHECKLIST_KEY: "7ddf754f-d193-4cc9-b351-99906754a03b",
      GBIF_TIMEOUT_MS: "500",
      LOG_LEVEL: "warn",
    });
    expect(config).toMatchObject({
      env: "production",
      http: { port: 9000 },
      worker: { concurrency: 3 },
      database: { migrateOnStart: false },
      gbif: { baseUrl: "http://gbif.test", checklistKey: "7ddf754f-d193-4cc9-b351-99906754a03b", timeoutMs: 500 },
      log: { level: "warn", format: "json" },
    });
  });

  it("reads the reliability settings, with defaults that fit Cloud Run's 10 s and the 30 s rescue target", () => {
    expect(parseConfig({}).reliability).toEqual({
      heartbeatIntervalMs: 4000,
      rescueAfterMs: 15_000,
      sweepIntervalMs: 3000,
      eventLoopStallLimitMs: 300_000,
      shutdownAbortAfterMs: 6000,
      shutdownTimeoutMs: 8500,
      revision: null,
    });
    expect(parseConfig({ K_REVISION: "observing-jobs-00042-xyz", HEARTBEAT_INTERVAL_MS: "1000", RESCUE_AFTER_MS: "3000" }).reliability).toMatchObject({
      revision: "observing-jobs-00042-xyz",
      heartbeatIntervalMs: 1000,
      rescueAfterMs: 3000,
    });
    expect(() => parseConfig({ HEARTBEAT_INTERVAL_MS: "10000", RESCUE_AFTER_MS: "25000" })).toThrow(/RESCUE_AFTER_MS must be at least three times HEARTBEAT_INTERVAL_MS/);
    expect(() => parseConfig({ RESCUE_AFTER_MS: "60000", EVENT_LOOP_STALL_LIMIT_MS: "30000" })).toThrow(/EVENT_LOOP_STALL_LIMIT_MS must be at least RESCUE_AFTER_MS/);
  });

  it("reads the database time limits, with defaults", () => {
    expect(parseConfig({}).database.timeouts).toEqual({ connectTimeoutMs: 10_000, statementTimeoutMs: 30_000, idleInTransactionTimeoutMs: 60_000, keepAliveIdleMs: 10_000 });
    expect(parseConfig({ DATABASE_STATEMENT_TIMEOUT_MS: "5000" }).database.timeouts.statementTimeoutMs).toBe(5000);
    expect(() => parseConfig({ DATABASE_CONNECT_TIMEOUT_MS: "0" })).toThrow(/DATABASE_CONNECT_TIMEOUT_MS must be >= 100/);
    expect(() => parseConfig({ SHUTDOWN_ABORT_AFTER_MS: "9000" })).toThrow(/SHUTDOWN_ABORT_AFTER_MS must be less than SHUTDOWN_TIMEOUT_MS/);
  });

  it("treats empty variables as unset", () => {
    expect(parseConfig({ PORT: "", DATABASE_URL: "" })).toMatchObject({ http: { port: 8080 }, database: { url: undefined } });
  });

  it("names each bad variable, what it expects and what it got", () => {
    const attempt = () => parseConfig({ PORT: "eighty", GBIF_TIMEOUT_MS: "3s", LOG_LEVEL: "loud", GBIF_BASE_URL: "api.gbif.org" });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/PORT must be integer, got "eighty"/);
    expect(attempt).toThrow(/GBIF_TIMEOUT_MS must be integer, got "3s"/);
    expect(attempt).toThrow(/LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"/);
    expect(attempt).toThrow(/GBIF_BASE_URL must be a URL starting with http:\/\/ or https:\/\//);
  });

  it("refuses out-of-range numbers", () => {
    expect(() => parseConfig({ WORKER_CONCURRENCY: "0" })).toThrow(/WORKER_CONCURRENCY must be >= 1, got "0"/);
    // One message per variable: a width that is no number is not also told it is no standard width.
    expect(() => parseConfig({ COMMONS_THUMBNAIL_WIDTH: "wide" })).toThrow(/^Invalid configuration: COMMONS_THUMBNAIL_WIDTH must be integer, got "wide"$/);
  });

  it("batches fetches by default (20 jobs per slot, at most 1000), at a size that fills every slot, and 0 turns it off", () => {
    expect(parseConfig({}).worker.localQueueSize).toBe(200);
    expect(parseConfig({ WORKER_CONCURRENCY: "3" }).worker.localQueueSize).toBe(60);
    expect(parseConfig({ WORKER_CONCURRENCY: "200" }).worker.localQueueSize).toBe(1000);
    expect(parseConfig({ WORKER_LOCAL_QUEUE_SIZE: "0" }).worker.localQueueSize).toBe(0);
    expect(parseConfig({ WORKER_LOCAL_QUEUE_SIZE: "1000" }).worker.localQueueSize).toBe(1000);
    expect(() => parseConfig({ WORKER_CONCURRENCY: "10", WORKER_LOCAL_QUEUE_SIZE: "5" })).toThrow(
      /WORKER_LOCAL_QUEUE_SIZE must be 0 \(off\) or at least WORKER_CONCURRENCY \(10\), got 5/,
    );
  });

  it("requires DATABASE_URL in production rather than starting an embedded database", () => {
    expect(() => parseConfig({ NODE_ENV: "production" })).toThrow(/DATABASE_URL is required when NODE_ENV=production/);
  });

  it("never repeats a password from a bad DATABASE_URL", () => {
    let message = "";
    try {
      parseConfig({ DATABASE_URL: "mysql://app:hunter2@db/x" });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/DATABASE_URL must be a URL starting with postgres:\/\//);
    expect(message).not.toContain("hunter2");
    expect(redactUrl("postgres://app:hunter2@db/x")).toBe("postgres://app:***@db/x");
    expect(redactUrl("postgresql://app:hunter2@/jobs?host=/cloudsql/proj:europe-west1:db")).toBe(
      "postgresql://app:***@/jobs?host=/cloudsql/proj:europe-west1:db",
    );
  });
});
