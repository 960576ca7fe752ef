import { sign } from "@fastify/cookie";
import { sql } from "kysely";
import { describe, expect } from "vitest";
import { parseConfig } from "../../src/config.ts";
import { enqueueJob } from "../../src/enqueue.ts";
import { SESSION_COOKIE } from "../../src/http/dashboard/session.ts";
import { safeNext } from "../../src/http/dashboard/pages/login.ts";
import { API_TOKEN, AUTH, buildTestApp, SESSION_SECRET } from "../helpers/app.ts";
import { resetData, test } from "../helpers/env.ts";
import { form, signIn, withCookies } from "./helpers.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

describe("signing in", () => {
  test("a bad token is refused with the reason and no cookie", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const response = await app.inject({ method: "POST", url: "/dashboard/login", ...form({ token: "not-a-configured-token-at-all", next: "/dashboard" }) });
      expect(response.statusCode).toBe(401);
      expect(response.headers["set-cookie"]).toBeUndefined();
      expect(response.body).toContain("Sign-in refused: invalid credential.");
      expect(response.body).not.toContain("not-a-configured-token-at-all");
    } finally {
      await app.close();
    }
  });

  test("a good token sets an HttpOnly, SameSite=Strict session cookie for /dashboard that holds no token", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const response = await app.inject({ method: "POST", url: "/dashboard/login", ...form({ token: API_TOKEN, next: "/dashboard/queues" }) });
      expect(response.statusCode).toBe(303);
      expect(response.headers.location).toBe("/dashboard/queues");
      const [cookie] = response.cookies;
      expect(cookie).toMatchObject({ name: SESSION_COOKIE, httpOnly: true, sameSite: "Strict", path: "/dashboard", maxAge: 12 * 3600 });
      expect(cookie!.secure).toBeUndefined();
      // A random session id (256 bits) and its signature: nothing about the caller, never the token.
      expect(cookie!.value).toMatch(/^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_+/=-]+$/);
      expect(cookie!.value).not.toContain(API_TOKEN);
      const sessions = await env.db.selectFrom("observing_jobs.dashboard_sessions").select(["caller_id", "expires_at", "ended_at"]).execute();
      expect(sessions).toEqual([{ caller_id: expect.stringMatching(/^token:[0-9a-f]{8}$/), expires_at: expect.any(Date), ended_at: null }]);
      expect(JSON.stringify(await env.db.selectFrom("observing_jobs.dashboard_sessions").selectAll().execute())).not.toContain(cookie!.value.split(".")[0]);

      // Behind Cloud Run's TLS the cookie is Secure.
      const https = await app.inject({ method: "POST", url: "/dashboard/login", headers: { ...form({ token: API_TOKEN }).headers, "x-forwarded-proto": "https" }, payload: form({ token: API_TOKEN }).payload });
      expect(https.cookies[0]!.secure).toBe(true);
    } finally {
      await app.close();
    }
  });

  test("pages without a session redirect to the login form and come back after it", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const page = await app.inject({ url: "/dashboard/jobs?state=dead" });
      expect(page.statusCode).toBe(303);
      expect(page.headers.location).toBe(`/dashboard/login?next=${encodeURIComponent("/dashboard/jobs?state=dead")}`);
      const login = await app.inject({ url: page.headers.location as string });
      expect(login.statusCode).toBe(200);
      expect(login.body).toContain('<input type="hidden" name="next" value="/dashboard/jobs?state=dead">');
      expect(login.body).toMatch(/<label for="token">Bearer token<\/label>/);

      const live = await app.inject({ url: "/dashboard/live/overview" });
      expect(live.statusCode).toBe(401);
      expect(live.json()).toMatchObject({ statusCode: 401 });
      const action = await app.inject({ method: "POST", url: "/dashboard/jobs/1/retry", ...form({}) });
      expect(action.statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });

  test("the login never sends the browser off the dashboard", () => {
    expect(safeNext("/dashboard/jobs?state=dead")).toBe("/dashboard/jobs?state=dead");
    for (const next of ["https://evil.example/", "//evil.example", "/dashboard//evil.example", "/dashboardx", "/jobs", "/dashboard\\@evil", undefined]) {
      expect(safeNext(next)).toBe("/dashboard");
    }
  });

  test("expired, tampered and revoked sessions are refused", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const { cookie } = await signIn(app);
      expect((await app.inject({ url: "/dashboard", headers: { cookie } })).statusCode).toBe(200);

      // A session id the server never issued, signed with the right secret, opens nothing.
      const unknown = sign("A".repeat(43), SESSION_SECRET);
      expect((await app.inject({ url: "/dashboard", headers: { cookie: `${SESSION_COOKIE}=${unknown}` } })).statusCode).toBe(303);

      // Nor does a real one whose signature was tampered with.
      const tampered = `${cookie.split(".")[0]}.${"x".repeat(43)}`;
      expect((await app.inject({ url: "/dashboard", headers: { cookie: tampered } })).statusCode).toBe(303);

      // Nor one past its expiry, by the database's clock.
      await sql`update observing_jobs.dashboard_sessions set expires_at = now() - interval '1 second'`.execute(env.db);
      expect((await app.inject({ url: "/dashboard", headers: { cookie } })).statusCode).toBe(303);
    } finally {
      await app.close();
    }
    // The same cookie, once its token is no longer configured, opens nothing.
    const before = await buildTestApp(env);
    const { cookie } = await signIn(before);
    await before.close();
    const after = await buildTestApp(env, { auth: { tokens: ["another-token-0123456789abcdef"] } });
    try {
      expect((await after.inject({ url: "/dashboard", headers: { cookie } })).statusCode).toBe(303);
    } finally {
      await after.close();
    }
  });

  test("signing out clears the cookie (and needs the CSRF token like any action)", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const { cookie, csrf } = await signIn(app);
      expect((await app.inject({ method: "POST", url: "/dashboard/logout", headers: { ...form({}).headers, cookie }, payload: "" })).statusCode).toBe(403);
      const out = await app.inject({ method: "POST", url: "/dashboard/logout", headers: { ...form({}).headers, cookie }, payload: form({ _csrf: csrf }).payload });
      expect(out.statusCode).toBe(303);
      expect(out.headers.location).toBe("/dashboard/login");
      expect(out.cookies[0]).toMatchObject({ name: SESSION_COOKIE, value: "", path: "/dashboard" });
    } finally {
      await app.close();
    }
  });

  test("logout revocation: after signing out, the old cookie and its CSRF token open and change nothing, on any instance", async ({ env }) => {
    const instanceA = await buildTestApp(env);
    const instanceB = await buildTestApp(env);
    try {
      const { cookie, csrf } = await signIn(instanceA);
      const job = await enqueueJob(env.db, env.registry, "resolve_taxa", {}, { runAt: new Date(Date.now() + 3_600_000) }, { source: "app" });
      expect((await instanceB.inject({ url: "/dashboard", headers: { cookie } })).statusCode).toBe(200);

      const out = await instanceA.inject({ method: "POST", url: "/dashboard/logout", ...form({ _csrf: csrf }), headers: { ...form({}).headers, cookie } });
      expect(out.statusCode).toBe(303);
      // A browser (or whoever copied the cookie) that keeps sending it:
      for (const instance of [instanceA, instanceB]) {
        const page = await instance.inject({ url: "/dashboard", headers: { cookie } });
        expect(page.statusCode).toBe(303);
        expect(page.headers.location).toMatch(/^\/dashboard\/login/);
        const cancel = await instance.inject({ method: "POST", url: `/dashboard/jobs/${job.id}/cancel`, headers: { ...form({}).headers, cookie }, payload: form({ _csrf: csrf }).payload });
        expect(cancel.statusCode).toBe(401);
      }
      const record = await env.db.selectFrom("observing_jobs.job_records").select("phase").where("id", "=", job.id).executeTakeFirstOrThrow();
      expect(record.phase).toBe("waiting");
      const [session] = await env.db.selectFrom("observing_jobs.dashboard_sessions").select("ended_at").execute();
      expect(session!.ended_at).toBeInstanceOf(Date);
    } finally {
      await instanceA.close();
      await instanceB.close();
    }
  });

  test("production refuses to start without DASHBOARD_SESSION_SECRET, and never echoes it", () => {
    const production = { NODE_ENV: "production", DATABASE_URL: "postgres://db/x", API_TOKENS: API_TOKEN };
    expect(() => parseConfig(production)).toThrow(/DASHBOARD_SESSION_SECRET is required when NODE_ENV=production/);
    expect(() => parseConfig({ ...production, DASHBOARD_SESSION_SECRET: "too-short-secret" })).toThrow(
      /DASHBOARD_SESSION_SECRET must NOT have fewer than 32 characters, got "\[redacted\]"/,
    );
    expect(parseConfig({ ...production, DASHBOARD_SESSION_SECRET: "x".repeat(32) }).dashboard.sessionSecret).toBe("x".repeat(32));
  });
});

describe("the Authorization header", () => {
  test("lets a request in without a cookie, and its actions need no CSRF token", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const page = await app.inject({ url: "/dashboard/jobs", headers: AUTH });
      expect(page.statusCode).toBe(200);
      expect(page.body).toMatch(/Signed in as <strong>token:[0-9a-f]{8}<\/strong> \(Authorization header\)/);
      expect(page.body).not.toContain('name="_csrf"');

      const run = await app.inject({ method: "POST", url: "/dashboard/tasks/resolve_taxa/run", headers: { ...AUTH, ...form({}).headers }, payload: form({ "payload.limit": "5" }).payload });
      expect(run.statusCode).toBe(303);
      expect(run.headers.location).toMatch(/^\/dashboard\/jobs\/\d+$/);

      const bad = await app.inject({ url: "/dashboard", headers: { authorization: "Bearer wrong-token-0123456789" } });
      expect(bad.statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });

  test("a cross-site request is refused even with valid credentials (a local auth proxy adds the header to anything)", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const job = await enqueueJob(env.db, env.registry, "resolve_taxa", {}, {}, { source: "app" });
      for (const headers of [{ "sec-fetch-site": "cross-site" }, { origin: "https://evil.example" }, { origin: "null" }]) {
        const response = await app.inject({ method: "POST", url: `/dashboard/jobs/${job.id}/cancel`, headers: { ...AUTH, ...form({}).headers, ...headers }, payload: "" });
        expect(response.statusCode).toBe(403);
        expect(response.body).toContain("the request came from another site");
      }
      const sameSite = await app.inject({
        method: "POST",
        url: `/dashboard/jobs/${job.id}/cancel`,
        headers: { ...AUTH, ...form({}).headers, "sec-fetch-site": "same-origin", origin: "http://localhost:80" },
        payload: "",
      });
      expect(sameSite.statusCode).toBe(303);
    } finally {
      await app.close();
    }
  });
});

describe("CSRF", () => {
  test("a session's action is refused without its token (403) and done with it", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const { cookie, csrf } = await signIn(app);
      const other = await signIn(app);
      const job = await enqueueJob(env.db, env.registry, "resolve_taxa", {}, {}, { source: "app" });
      const cancel = (payload: Record<string, string>, extra: Record<string, string> = {}) =>
        app.inject({ method: "POST", url: `/dashboard/jobs/${job.id}/cancel`, headers: { ...form({}).headers, cookie, ...extra }, payload: form(payload).payload });

      for (const attempt of [await cancel({}), await cancel({ _csrf: "forged" }), await cancel({ _csrf: other.csrf })]) {
        expect(attempt.statusCode).toBe(403);
        expect(attempt.body).toContain("security token is missing or out of date");
      }
      expect((await app.inject({ url: `/dashboard/jobs/${job.id}`, headers: { cookie } })).body).toContain('data-state="queued"');

      const done = await cancel({ _csrf: csrf });
      expect(done.statusCode).toBe(303);
      expect(done.headers.location).toBe(`/dashboard/jobs/${job.id}`);
      const page = await app.inject({ url: done.headers.location as string, headers: { cookie: withCookies(cookie, done) } });
      expect(page.body).toContain("Job cancelled.");
      expect(page.body).toContain('data-state="cancelled"');
      const events = await env.db.selectFrom("observing_jobs.job_events").select(["event", "actor"]).where("job_id", "=", job.id).orderBy("id").execute();
      expect(events.at(-1)).toEqual({ event: "cancelled", actor: expect.stringMatching(/^token:[0-9a-f]{8}$/) });
    } finally {
      await app.close();
    }
  });

  test("a script on the page may send the token as a header instead", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const { cookie, csrf } = await signIn(app);
      const job = await enqueueJob(env.db, env.registry, "resolve_taxa", {}, {}, { source: "app" });
      const response = await app.inject({ method: "POST", url: `/dashboard/jobs/${job.id}/cancel`, headers: { cookie, "x-csrf-token": csrf } });
      expect(response.statusCode).toBe(303);
    } finally {
      await app.close();
    }
  });
});

describe("headers", () => {
  test("pages forbid framing, inline scripts and sniffing, and are not cached", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      for (const url of ["/dashboard", "/dashboard/login"]) {
        const response = await app.inject({ url, headers: url === "/dashboard" ? AUTH : {} });
        expect(response.headers["content-security-policy"]).toBe("default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'");
        expect(response.headers["x-content-type-options"]).toBe("nosniff");
        expect(response.headers["x-frame-options"]).toBe("DENY");
        expect(response.headers["cache-control"]).toBe("no-store");
        expect(response.body).not.toMatch(/<script>|<script [^>]*>[^<]|\son[a-z]+="|style="/);
      }
      const page = await app.inject({ url: "/dashboard/login" });
      const css = /href="(\/dashboard\/assets\/dashboard\.css\?v=[0-9a-f]{12})"/.exec(page.body)![1]!;
      const asset = await app.inject({ url: css });
      expect(asset.statusCode).toBe(200);
      expect(asset.headers["content-type"]).toBe("text/css; charset=utf-8");
      expect(asset.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
      expect((await app.inject({ url: "/dashboard/assets/nope.js" })).statusCode).toBe(404);
    } finally {
      await app.close();
    }
  });

  test("dashboard routes stay out of the API's OpenAPI document", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const paths = Object.keys((await app.inject({ url: "/openapi.json", headers: AUTH })).json().paths);
      expect(paths.some((path) => path.startsWith("/dashboard"))).toBe(false);
    } finally {
      await app.close();
    }
  });
});
