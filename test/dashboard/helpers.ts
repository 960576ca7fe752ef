/** A signed-in browser's credentials and forms, for the dashboard's tests (the app: ../helpers/app.ts). */
import { expect } from "vitest";
import type { App } from "../../src/http/app.ts";
import { API_TOKEN } from "../helpers/app.ts";

/** A url-encoded form body, as a browser sends it. */
export function form(values: Record<string, string | string[]>): { payload: string; headers: Record<string, string> } {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) for (const item of [value].flat()) params.append(key, item);
  return { payload: params.toString(), headers: { "content-type": "application/x-www-form-urlencoded" } };
}

export interface Browser {
  /** The Cookie header a browser would send. */
  cookie: string;
  /** The CSRF token the session's pages carry. */
  csrf: string;
}

/** Signs in through the login form and reads the CSRF token from a page, as a browser would. */
export async function signIn(app: App, token = API_TOKEN): Promise<Browser> {
  const login = await app.inject({ method: "POST", url: "/dashboard/login", ...form({ token, next: "/dashboard" }) });
  expect(login.statusCode).toBe(303);
  const session = login.cookies.find((cookie) => cookie.name === "observing_jobs_session");
  expect(session).toBeDefined();
  const cookie = `${session!.name}=${session!.value}`;
  const page = await app.inject({ method: "GET", url: "/dashboard/tasks/resolve_taxa", headers: { cookie } });
  const csrf = /name="_csrf" value="([^"]+)"/.exec(page.body)?.[1];
  expect(csrf).toBeDefined();
  return { cookie, csrf: csrf! };
}

/** Posts a form as the signed-in browser does: with its session cookie, and its CSRF token among the values. */
export function postForm(app: App, { cookie, csrf }: Browser, url: string, values: Record<string, string | string[]> = {}) {
  const body = form({ _csrf: csrf, ...values });
  return app.inject({ method: "POST", url, headers: { ...body.headers, cookie }, payload: body.payload });
}

/** The Cookie header after a response: the browser's cookies plus those the response set (an action's notice). */
export function withCookies(cookie: string, response: { cookies: Array<{ name: string; value: string }> }): string {
  const set = response.cookies.filter((item) => item.value !== "").map((item) => `${item.name}=${item.value}`);
  return [cookie, ...set].join("; ");
}
