import { describe, expect } from "vitest";
import { parseConfig } from "../../src/config.ts";
import { API_TOKEN, buildTestApp } from "../helpers/app.ts";
import { resetData, test } from "../helpers/env.ts";
import { FakeGoogleOidc, GOOGLE_ISSUER } from "../helpers/fake-google-oidc.ts";

const AUDIENCE = "https://observing-jobs-abc123-ew.a.run.app";
const ALLOWED = "scheduler@observing-prod.iam.gserviceaccount.com";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

describe("static bearer tokens", () => {
  test("a missing or wrong credential is 401; health stays open", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const missing = await app.inject({ method: "GET", url: "/jobs" });
      expect(missing.statusCode).toBe(401);
      expect(missing.headers["www-authenticate"]).toMatch(/^Bearer/);
      expect(missing.json().message).toMatch(/missing bearer credential/);
      const wrong = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: { authorization: "Bearer not-the-token" }, payload: {} });
      expect(wrong.statusCode).toBe(401);
      expect((await app.inject({ method: "GET", url: "/openapi.json" })).statusCode).toBe(401);
      expect((await app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
      expect((await app.inject({ method: "GET", url: "/readyz" })).statusCode).toBe(200);
      const right = await app.inject({ method: "GET", url: "/jobs", headers: { authorization: `Bearer ${API_TOKEN}` } });
      expect(right.statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });

  test("auth can be disabled explicitly outside production, never in production", async ({ env }) => {
    const app = await buildTestApp(env, { auth: { disabled: true, tokens: [] } });
    try {
      const response = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", payload: {} });
      expect(response.statusCode).toBe(202);
      const job = await app.inject({ method: "GET", url: response.json().links.self });
      expect(job.json().timeline[0].actor).toBe("anonymous");
    } finally {
      await app.close();
    }
    expect(() => parseConfig({ NODE_ENV: "production", DATABASE_URL: "postgres://db/x", AUTH_DISABLED: "true", API_TOKENS: API_TOKEN })).toThrow(
      /AUTH_DISABLED=true is refused when NODE_ENV=production/,
    );
    expect(() => parseConfig({ NODE_ENV: "production", DATABASE_URL: "postgres://db/x" })).toThrow(/API_TOKENS or AUTH_OIDC_AUDIENCE is required/);
    expect(() => parseConfig({ AUTH_OIDC_AUDIENCE: AUDIENCE })).toThrow(/AUTH_ALLOWED_CALLERS is required when AUTH_OIDC_AUDIENCE is set/);
    expect(() => parseConfig({ API_TOKENS: "short" })).toThrow(/API_TOKENS must be comma-separated tokens of at least 16 characters without spaces, got "\[redacted\]"/);
  });
});

describe("the metrics token (METRICS_TOKEN, held by the telemetry sidecar)", () => {
  const METRICS_TOKEN = "metrics-scrape-token-0123456789";

  test("opens GET /metrics and nothing else; API callers still read metrics", async ({ env }) => {
    const app = await buildTestApp(env, { auth: { metricsToken: METRICS_TOKEN } });
    try {
      const scraper = { authorization: `Bearer ${METRICS_TOKEN}` };
      const scrape = await app.inject({ method: "GET", url: "/metrics", headers: scraper });
      expect(scrape.statusCode).toBe(200);
      expect(scrape.body).toMatch(/^# HELP observing_jobs_/m);
      for (const [method, url] of [["GET", "/jobs"], ["POST", "/jobs/resolve_taxa"], ["GET", "/queues"], ["GET", "/openapi.json"]] as const) {
        expect((await app.inject({ method, url, headers: scraper, payload: method === "POST" ? {} : undefined })).statusCode, `${method} ${url}`).toBe(401);
      }
      expect((await app.inject({ method: "GET", url: "/metrics", headers: { authorization: `Bearer ${API_TOKEN}` } })).statusCode).toBe(200);
      expect((await app.inject({ method: "GET", url: "/metrics", headers: { authorization: `Bearer ${METRICS_TOKEN}x` } })).statusCode).toBe(401);
      expect((await app.inject({ method: "GET", url: "/metrics" })).statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });

  test("is one token of at least 16 characters, never shown in errors", () => {
    expect(parseConfig({ METRICS_TOKEN }).auth.metricsToken).toBe(METRICS_TOKEN);
    expect(parseConfig({}).auth.metricsToken).toBeUndefined();
    expect(() => parseConfig({ METRICS_TOKEN: "a,b c-short" })).toThrow(/METRICS_TOKEN must be one token of at least 16 characters without spaces, got "\[redacted\]"/);
  });
});

describe("requests a browser started from another site", () => {
  test("cannot act on jobs even with credentials (gcloud run services proxy adds them to any request)", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const headers = { authorization: `Bearer ${API_TOKEN}`, "sec-fetch-site": "cross-site" };
      const write = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers, payload: {} });
      expect(write.statusCode).toBe(403);
      expect(write.json().message).toMatch(/cross-site/);
      const byOrigin = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: { authorization: `Bearer ${API_TOKEN}`, origin: "https://evil.example" }, payload: {} });
      expect(byOrigin.statusCode).toBe(403);
      const plain = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "text/plain" }, payload: "{}" });
      expect(plain.statusCode).toBe(415);
      expect(await env.db.selectFrom("observing_jobs.job_records").select("id").execute()).toHaveLength(0);
      expect((await app.inject({ method: "GET", url: "/jobs", headers })).statusCode).toBe(200);
      const sameOrigin = await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: { ...headers, "sec-fetch-site": "same-origin" }, payload: {} });
      expect(sameOrigin.statusCode).toBe(202);
    } finally {
      await app.close();
    }
  });
});

describe("Google-signed OIDC ID tokens", () => {
  test("verified for signature, issuer, audience, expiry, issue time, lifetime and caller", async ({ env }) => {
    const google = await new FakeGoogleOidc().start();
    const app = await buildTestApp(env, {
      auth: { tokens: [], oidc: { audience: AUDIENCE, jwksUrl: google.jwksUrl, issuers: [GOOGLE_ISSUER, "accounts.google.com"], allowedCallers: [ALLOWED] } },
    });
    const call = async (token: string) =>
      app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: { authorization: `Bearer ${token}` }, payload: { force: true } });
    try {
      const ok = await call(await google.idToken(AUDIENCE));
      expect(ok.statusCode).toBe(202);
      const job = await app.inject({ method: "GET", url: ok.json().links.self, headers: { authorization: `Bearer ${await google.idToken(AUDIENCE)}` } });
      expect(job.json().timeline[0]).toMatchObject({ source: "http", actor: ALLOWED });

      const cases: Array<[string, Promise<string>, number, RegExp]> = [
        ["not on the allowlist", google.idToken(AUDIENCE, { email: "intruder@example.com" }), 403, /intruder@example.com is not allowed/],
        ["an unverified email", google.idToken(AUDIENCE, { email_verified: false }), 403, /no verified email/],
        ["another audience", google.idToken(AUDIENCE, { aud: "https://other-service.a.run.app" }), 401, /aud claim is not accepted/],
        ["another issuer", google.idToken(AUDIENCE, { iss: "https://evil.example" }), 401, /iss claim is not accepted/],
        ["expired", google.idToken(AUDIENCE, { expiresIn: -120 }), 401, /expired/],
        ["signed by another key", google.forgedIdToken(AUDIENCE), 401, /signed by an unknown key|signature/],
        // Tokens Google never issues: no expiry, no issue time, issued in the future, valid for a century or issued long ago.
        ["without exp (an exp-less ID token)", google.idToken(AUDIENCE, { expiresIn: null }), 401, /^invalid ID token: exp claim is missing$/],
        ["without iat", google.idToken(AUDIENCE, { issuedIn: null }), 401, /^invalid ID token: iat claim is missing$/],
        ["with iat in the future beyond the skew", google.idToken(AUDIENCE, { issuedIn: 600, expiresIn: 1200 }), 401, /^invalid ID token: iat claim is not accepted$/],
        ["with exp 100 years ahead", google.idToken(AUDIENCE, { expiresIn: 100 * 365 * 86_400 }), 401, /^invalid ID token: it is valid for more than 1 hour$/],
        ["issued more than an hour ago", google.idToken(AUDIENCE, { issuedIn: -7200, expiresIn: 600 }), 401, /^invalid ID token: expired$/],
      ];
      for (const [label, token, status, message] of cases) {
        const response = await call(await token);
        expect(response.statusCode, label).toBe(status);
        expect(response.json().message, label).toMatch(message);
      }
      // What Google does issue passes: an hour's lifetime, and an iat a few seconds ahead of our clock.
      expect((await call(await google.idToken(AUDIENCE, { issuedIn: 0, expiresIn: 3600 }))).statusCode).toBe(202);
      expect((await call(await google.idToken(AUDIENCE, { issuedIn: 30, expiresIn: 3630 }))).statusCode).toBe(202);
      const jobs = await app.inject({ method: "GET", url: "/jobs", headers: { authorization: `Bearer ${await google.idToken(AUDIENCE)}` } });
      expect(jobs.json().jobs).toHaveLength(3);
    } finally {
      await app.close();
      await google.stop();
    }
  });
});
