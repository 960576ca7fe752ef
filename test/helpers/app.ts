/**
 * The one way tests build the Fastify app (API and dashboard) over a test environment: a known API
 * token, a known dashboard session secret, the environment's registry unless a test brings its own.
 */
import { buildApp, type App } from "../../src/http/app.ts";
import type { Config } from "../../src/config.ts";
import { loadCrontab } from "../../src/cron/crontab.ts";
import type { CronFreshness } from "../../src/cron/freshness.ts";
import type { DashboardSources } from "../../src/http/dashboard/sources.ts";
import type { JobEndWaits } from "../../src/lifecycle/job-end-waits.ts";
import type { Logger } from "../../src/observability/logger.ts";
import type { TaskRegistry } from "../../src/registry.ts";
import { test, type TestEnv } from "./env.ts";

export const API_TOKEN = "test-token-0123456789abcdef";
export const AUTH = { authorization: `Bearer ${API_TOKEN}` };
export const SESSION_SECRET = "dashboard-test-session-secret-0123456789";

export interface TestAppOptions {
  auth?: Partial<Config["auth"]>;
  http?: Partial<Config["http"]>;
  worker?: { isRunning(): boolean };
  /** Tasks beside (or instead of) the real ones; the crontab is checked against them. */
  registry?: TaskRegistry;
  /** The dashboard's live sources (worker pools, overdue cron entries); shown as not available when absent. */
  sources?: DashboardSources;
  /** Instead of the environment's cron freshness (e.g. one started long ago, so entries are overdue). */
  cronFreshness?: CronFreshness;
  /** Waits for jobs' ends (`?wait=`), to look at them; the app opens its own when absent. */
  jobEnds?: JobEndWaits;
  /** Instead of the environment's logger (whose lines env.logs collects), e.g. a quieter child of it. */
  logger?: Logger;
}

export async function buildTestApp(env: TestEnv, options: TestAppOptions = {}): Promise<App> {
  const registry = options.registry ?? env.registry;
  return buildApp({
    config: {
      auth: { disabled: false, tokens: [API_TOKEN], oidc: null, ...options.auth },
      http: { ...env.config.http, ...options.http },
      dashboard: { sessionSecret: SESSION_SECRET },
    },
    logger: options.logger ?? env.logger,
    pool: env.pool,
    db: env.db,
    registry,
    crontab: await loadCrontab(env.config.worker.crontabFile, registry),
    queueStats: env.queueStats,
    cronFreshness: options.cronFreshness ?? env.cronFreshness,
    metrics: env.metrics,
    worker: options.worker ?? { isRunning: () => true },
    ...(options.sources ? { dashboardSources: options.sources } : {}),
    ...(options.jobEnds ? { jobEnds: options.jobEnds } : {}),
  });
}

/**
 * The app a test file's tests share: built over the file's environment before its first test and
 * closed after its last. Call it at the top of the file; what it returns gives the app while the
 * tests run.
 */
export function testAppForFile(options: TestAppOptions = {}): () => App {
  let app: App | undefined;
  test.beforeAll(async ({ env }) => {
    app = await buildTestApp(env, options);
  });
  test.afterAll(async () => {
    await app?.close();
  });
  return () => {
    if (!app) throw new Error("the file's test app is built before its first test: use it inside a test or hook");
    return app;
  };
}
