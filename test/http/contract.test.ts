/**
 * What a client may rely on beyond each route's behaviour: the OpenAPI document says exactly what is
 * accepted (required only where required, unknown query parameters refused everywhere, integers as
 * integers) and answered (documented media type, every status), every response carries nosniff and
 * no-store, one caller is rate-limited on enqueue and action routes, and slow or silent connections
 * are closed.
 */
import net from "node:net";
import { describe, expect } from "vitest";
import type { App } from "../../src/http/app.ts";
import { API_TOKEN, AUTH, buildTestApp } from "../helpers/app.ts";
import { listJobs, resetData, test } from "../helpers/env.ts";
import { form } from "../dashboard/helpers.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

type Document = {
  paths: Record<string, Record<string, { parameters?: Array<{ in: string; name: string; required?: boolean; schema: { type?: string } }>; requestBody?: { required: boolean }; responses: Record<string, { content?: Record<string, unknown> }> }>>;
};

async function documentOf(app: App): Promise<Document> {
  return (await app.inject({ url: "/openapi.json", headers: AUTH })).json() as Document;
}

/** A request for every documented operation, with its path parameters filled in. */
function operations(document: Document): Array<{ method: string; path: string; url: string }> {
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.keys(methods).map((method) => ({ method: method.toUpperCase(), path, url: path.replace("{id}", "1").replace("{kind}", "task").replace("{name}", "resolve_taxa") })),
  );
}

describe("the OpenAPI document says exactly what the service accepts", () => {
  test("required only where required: the list's limit and the single enqueue's body have defaults", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const document = await documentOf(app);
      const limit = document.paths["/jobs"]!.get!.parameters!.find((parameter) => parameter.name === "limit")!;
      expect(limit.required).toBe(false);
      expect((await app.inject({ url: "/jobs", headers: AUTH })).statusCode).toBe(200);
      for (const task of ["resolve_taxa", "backfill_kingdom"]) {
        expect(document.paths[`/jobs/${task}`]!.post!.requestBody!.required).toBe(false);
        expect(document.paths[`/jobs/${task}/batch`]!.post!.requestBody!.required).toBe(true);
      }
      expect(JSON.stringify(document)).not.toContain("x-optional-body");
      // Path parameters are the only required parameters anywhere.
      for (const methods of Object.values(document.paths)) {
        for (const operation of Object.values(methods)) {
          for (const parameter of operation.parameters ?? []) expect(parameter.required ?? false, `${parameter.in} ${parameter.name}`).toBe(parameter.in === "path");
        }
      }
    } finally {
      await app.close();
    }
  });

  test("integers are documented as integers and read only as plain decimals", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const document = await documentOf(app);
      const types = Object.fromEntries(document.paths["/jobs/resolve_taxa/batch"]!.post!.parameters!.map((parameter) => [parameter.name, parameter.schema.type]));
      expect(types).toEqual({ runAt: "string", priority: "integer", maxAttempts: "integer", queue: "string" });
      for (const value of ["0x10", "1e1", "+7"]) {
        expect((await app.inject({ method: "POST", url: `/jobs/resolve_taxa/batch?priority=${encodeURIComponent(value)}`, headers: AUTH, payload: { payloads: [{}] } })).statusCode).toBe(400);
      }
      expect(await listJobs(env.db)).toHaveLength(0);
    } finally {
      await app.close();
    }
  });

  test("unknown query parameters are refused by every operation, /batch included", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const document = await documentOf(app);
      const all = operations(document);
      expect(all.length).toBeGreaterThanOrEqual(20);
      for (const { method, url } of all) {
        const payload = url.includes("backfill_kingdom") ? { kingdom: "Plantae" } : {};
        const body = url.endsWith("/batch") ? { payloads: [payload] } : payload;
        const response = await app.inject({ method: method as "GET" | "POST", url: `${url}?foo=bar`, headers: AUTH, ...(method === "POST" ? { payload: body } : {}) });
        expect(response.statusCode, `${method} ${url}`).toBe(400);
        expect(response.json().message, `${method} ${url}`).toMatch(/querystring has unknown property 'foo'|querystring must NOT have additional properties/);
      }
      // The finding: ?jobKey= on /batch was silently ignored.
      const batch = await app.inject({ method: "POST", url: "/jobs/resolve_taxa/batch?jobKey=abc", headers: AUTH, payload: { payloads: [{}] } });
      expect(batch.statusCode).toBe(400);
      expect(batch.json().message).toBe("querystring has unknown property 'jobKey'");
      expect(await listJobs(env.db)).toHaveLength(0);
    } finally {
      await app.close();
    }
  });

  test("JSON answers carry exactly the documented media type, application/json, and every response nosniff and no-store", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      const document = await documentOf(app);
      const responses = [
        await app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: AUTH, payload: { taxonIds: [1] } }),
        await app.inject({ url: "/jobs", headers: AUTH }),
        await app.inject({ url: "/jobs/424242", headers: AUTH }),
        await app.inject({ url: "/jobs" }),
        await app.inject({ url: "/healthz" }),
        await app.inject({ url: "/tasks", headers: AUTH }),
        await app.inject({ url: "/nowhere", headers: AUTH }),
      ];
      for (const response of responses) {
        expect(response.headers["content-type"]).toBe("application/json");
        expect(response.headers["x-content-type-options"]).toBe("nosniff");
        expect(response.headers["cache-control"]).toBe("no-store");
      }
      const documented = new Set(Object.values(document.paths).flatMap((methods) => Object.values(methods).flatMap((operation) => Object.values(operation.responses).flatMap((answer) => Object.keys(answer.content ?? {})))));
      const metrics = await app.inject({ url: "/metrics", headers: AUTH });
      expect([...documented].sort()).toEqual(["application/json", metrics.headers["content-type"]]);
      expect(metrics.headers["x-content-type-options"]).toBe("nosniff");
    } finally {
      await app.close();
    }
  });
});

describe("the per-caller rate limit", () => {
  test("answers 429 with Retry-After once a caller used the window, enqueues nothing, and spares other callers and reads", async ({ env }) => {
    const other = "another-test-token-0123456789";
    const app = await buildTestApp(env, { auth: { tokens: [API_TOKEN, other] }, http: { rateLimit: { max: 3, windowMs: 60_000 } } });
    try {
      const enqueue = (token: string) => app.inject({ method: "POST", url: "/jobs/resolve_taxa", headers: { authorization: `Bearer ${token}` }, payload: {} });
      for (let i = 0; i < 3; i++) expect((await enqueue(API_TOKEN)).statusCode).toBe(202);
      const refused = await enqueue(API_TOKEN);
      expect(refused.statusCode).toBe(429);
      expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
      expect(Number(refused.headers["retry-after"])).toBeLessThanOrEqual(60);
      expect(refused.json()).toMatchObject({ statusCode: 429, error: "Too Many Requests", message: expect.stringMatching(/at most 3 per 60 s/) });
      expect(await listJobs(env.db)).toHaveLength(3);
      // Actions share the caller's window; reads are not limited; another caller has its own window.
      expect((await app.inject({ method: "POST", url: "/jobs/1/cancel", headers: AUTH })).statusCode).toBe(429);
      expect((await app.inject({ url: "/jobs", headers: AUTH })).statusCode).toBe(200);
      expect((await enqueue(other)).statusCode).toBe(202);
      // A malformed request counts as well: it is refused before it is read.
      expect((await app.inject({ method: "POST", url: "/jobs/resolve_taxa/batch", headers: AUTH, payload: { payloads: "x" } })).statusCode).toBe(429);
    } finally {
      await app.close();
    }
  });

  test("applies to the dashboard's forms that enqueue and act", async ({ env }) => {
    const app = await buildTestApp(env);
    try {
      let status = 0;
      let sent = 0;
      while (status !== 429 && sent < 1000) {
        status = (await app.inject({ method: "POST", url: "/dashboard/tasks/resolve_taxa/run", headers: { ...AUTH, ...form({}).headers }, payload: "" })).statusCode;
        sent += 1;
      }
      expect(status).toBe(429);
      expect(sent).toBe(env.config.http.rateLimit!.max + 1);
      const refused = await app.inject({ method: "POST", url: "/dashboard/jobs/1/cancel", headers: { ...AUTH, ...form({}).headers }, payload: "" });
      expect(refused.statusCode).toBe(429);
      expect(refused.headers["retry-after"]).toBeDefined();
      expect(refused.body).toContain("too many requests from this caller");
    } finally {
      await app.close();
    }
  });

  test("is configurable, and off with HTTP_RATE_LIMIT_MAX=0", async () => {
    const { parseConfig } = await import("../../src/config.ts");
    expect(parseConfig({}).http.rateLimit).toEqual({ max: 120, windowMs: 60_000 });
    expect(parseConfig({ HTTP_RATE_LIMIT_MAX: "10", HTTP_RATE_LIMIT_WINDOW_MS: "1000" }).http.rateLimit).toEqual({ max: 10, windowMs: 1000 });
    expect(parseConfig({ HTTP_RATE_LIMIT_MAX: "0" }).http.rateLimit).toBeNull();
    expect(() => parseConfig({ HTTP_RATE_LIMIT_MAX: "-1" })).toThrow(/HTTP_RATE_LIMIT_MAX/);
  });
});

describe("slow and idle connections", () => {
  test("a connection that sends nothing, and a request that never finishes, are closed after HTTP_REQUEST_TIMEOUT_MS (the latter with 408)", async ({ env }) => {
    const app = await buildTestApp(env, { http: { requestTimeoutMs: 1000 } });
    try {
      const address = new URL(await app.listen({ host: "127.0.0.1", port: 0 }));
      /** Opens a connection, runs `start` on it, and resolves with what it received and when it closed. */
      const watch = (start: (socket: net.Socket) => void) =>
        new Promise<{ closedAfter: number; received: string }>((resolve) => {
          const opened = Date.now();
          let received = "";
          const socket = net.connect(Number(address.port), address.hostname, () => start(socket));
          socket.on("data", (chunk) => (received += String(chunk)));
          socket.on("error", () => {});
          socket.on("close", () => resolve({ closedAfter: Date.now() - opened, received }));
        });
      const [silent, slow] = await Promise.all([
        watch(() => {}),
        watch((socket) => {
          // Headers that never end, a byte at a time.
          socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
          const drip = setInterval(() => (socket.destroyed ? clearInterval(drip) : socket.write("X")), 200);
          socket.on("close", () => clearInterval(drip));
        }),
      ]);
      for (const connection of [silent, slow]) {
        expect(connection.closedAfter).toBeGreaterThanOrEqual(900);
        expect(connection.closedAfter).toBeLessThan(5000);
      }
      expect(slow.received).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      await app.close();
    }
  });

  test("an idle keep-alive connection is closed after HTTP_KEEP_ALIVE_TIMEOUT_MS", async ({ env }) => {
    const app = await buildTestApp(env, { http: { keepAliveTimeoutMs: 1000 } });
    try {
      const address = new URL(await app.listen({ host: "127.0.0.1", port: 0 }));
      const socket = net.connect(Number(address.port), address.hostname, () => socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
      let answered = 0;
      socket.on("data", () => (answered ||= Date.now()));
      const closed = await new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now())));
      expect(answered).toBeGreaterThan(0);
      expect(closed - answered).toBeGreaterThanOrEqual(900);
      expect(closed - answered).toBeLessThan(4000);
    } finally {
      await app.close();
    }
  });

  test("the timeouts are settings", async () => {
    const { parseConfig } = await import("../../src/config.ts");
    expect(parseConfig({}).http).toMatchObject({ requestTimeoutMs: 30_000, keepAliveTimeoutMs: 72_000 });
    expect(parseConfig({ HTTP_REQUEST_TIMEOUT_MS: "2000", HTTP_KEEP_ALIVE_TIMEOUT_MS: "1000" }).http).toMatchObject({ requestTimeoutMs: 2000, keepAliveTimeoutMs: 1000 });
    expect(() => parseConfig({ HTTP_REQUEST_TIMEOUT_MS: "10" })).toThrow(/HTTP_REQUEST_TIMEOUT_MS must be >= 1000/);
  });
});

test("a favicon is served, at /favicon.ico and as the dashboard pages' icon", async ({ env }) => {
  const app = await buildTestApp(env);
  try {
    const ico = await app.inject({ url: "/favicon.ico" });
    expect(ico.statusCode).toBe(200);
    expect(ico.headers["content-type"]).toBe("image/x-icon");
    expect(ico.rawPayload.subarray(0, 4)).toEqual(Buffer.from([0, 0, 1, 0]));
    const login = await app.inject({ url: "/dashboard/login" });
    const href = /<link rel="icon" href="([^"]+)" type="image\/svg\+xml">/.exec(login.body)![1]!;
    const svg = await app.inject({ url: href });
    expect(svg.statusCode).toBe(200);
    expect(svg.headers["content-type"]).toBe("image/svg+xml");
    expect(svg.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
  } finally {
    await app.close();
  }
});
