/** The Fastify app over a test environment, with a known API token. */
import { buildApp, type App } from "../../src/http/app.ts";
import type { Config } from "../../src/config.ts";
import { loadCrontab } from "../../src/cron/crontab.ts";
import type { TestEnv } from "./env.ts";

export const API_TOKEN = "test-token-0123456789abcdef";
export const AUTH = { authorization: `Bearer ${API_TOKEN}` };

export async function buildTestApp(
  env: TestEnv,
  overrides: { auth?: Partial<Config["auth"]>; worker?: { isRunning(): boolean }; http?: Partial<Config["http"]> } = {},
): Promise<App> {
  return buildApp({
    config: {
      auth: { disabled: false, tokens: [API_TOKEN], oidc: null, ...overrides.auth },
      http: { ...env.config.http, ...overrides.http },
    },
    logger: env.logger,
    pool: env.pool,
    db: env.db,
    registry: env.registry,
    crontab: await loadCrontab(env.config.worker.crontabFile, env.registry),
    queueStats: env.queueStats,
    cronFreshness: env.cronFreshness,
    metrics: env.metrics,
    worker: overrides.worker ?? { isRunning: () => true },
  });
}
