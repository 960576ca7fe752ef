/**
 * The page shell and the small pieces every dashboard page uses: navigation, state badges,
 * times, JSON blocks, CSRF fields and notices.
 */
import { ASSETS } from "./assets.ts";
import { html, type Html, type HtmlValue } from "./html.ts";
import { CSRF_FIELD } from "./session.ts";

/** Who is looking at the dashboard, and how they proved it. */
export interface Operator {
  id: string;
  /** header: an Authorization header on this request; session: the login cookie; open: authentication is disabled. */
  via: "header" | "session" | "open";
  /** The session's CSRF token; null when the request needs none (see the dashboard plugin). */
  csrfToken: string | null;
}

export type Section = "overview" | "jobs" | "dead-letter" | "tasks" | "queues" | "login";

const SECTIONS: Array<{ id: Section; label: string; href: string }> = [
  { id: "overview", label: "Overview", href: "/dashboard" },
  { id: "jobs", label: "Jobs", href: "/dashboard/jobs" },
  { id: "dead-letter", label: "Dead-letter", href: "/dashboard/dead-letter" },
  { id: "tasks", label: "Tasks & schedules", href: "/dashboard/tasks" },
  { id: "queues", label: "Queues", href: "/dashboard/queues" },
];

export interface Notice {
  kind: "ok" | "error";
  text: string;
}

export interface PageOptions {
  title: string;
  section: Section;
  operator: Operator | null;
  body: Html;
  /** A JSON endpoint whose fragments replace the page's `data-live-fragment` elements as they change. */
  live?: { src: string; intervalMs?: number };
  notice?: Notice | null;
}

export function renderPage(options: PageOptions): string {
  const { operator } = options;
  const nav = operator
    ? html`<nav aria-label="Sections"><ul>${SECTIONS.map(
        (section) =>
          html`<li><a href="${section.href}"${section.id === options.section ? html` aria-current="page"` : ""}>${section.label}</a></li>`,
      )}</ul></nav>
      <div class="who">${whoIs(operator)}</div>`
    : "";
  const live = options.live
    ? html` data-live-src="${options.live.src}" data-live-interval="${options.live.intervalMs ?? 5000}"`
    : "";
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${options.title} · observing-jobs</title>
<link rel="icon" href="${ASSETS["favicon.svg"].url}" type="image/svg+xml">
<link rel="stylesheet" href="${ASSETS["dashboard.css"].url}">
<script src="${ASSETS["live.js"].url}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="/dashboard">observing-jobs</a>
${nav}
</header>
<main id="main"${live}>
<h1>${options.title}</h1>
${options.notice ? notice(options.notice) : ""}
${options.body}
${options.live ? html`<p class="live-status" data-live-status>Live: updates every ${Math.round((options.live.intervalMs ?? 5000) / 1000)} s.</p>` : ""}
</main>
</body>
</html>
`.toString();
}

function whoIs(operator: Operator): Html {
  if (operator.via === "open") return html`<span>Authentication is disabled: acting as <strong>${operator.id}</strong></span>`;
  if (operator.via === "header") return html`<span>Signed in as <strong>${operator.id}</strong> (Authorization header)</span>`;
  return html`<span>Signed in as <strong>${operator.id}</strong></span>
    <form method="post" action="/dashboard/logout" class="inline">${csrfField(operator)}<button type="submit" class="link">Sign out</button></form>`;
}

export function notice(value: Notice): Html {
  return html`<p class="notice notice-${value.kind}" role="${value.kind === "error" ? "alert" : "status"}">${value.text}</p>`;
}

/** The hidden CSRF field of every acting form (nothing when the request needs none). */
export function csrfField(operator: Operator): Html {
  return operator.csrfToken ? html`<input type="hidden" name="${CSRF_FIELD}" value="${operator.csrfToken}">` : html``;
}

const STATE_HINTS: Record<string, string> = {
  queued: "due now, waiting for a worker (perhaps in one's local queue)",
  scheduled: "due later, not attempted yet",
  running: "an attempt is in progress",
  retry_wait: "failed, waiting to retry",
  succeeded: "done",
  dead: "used all its attempts",
  cancelled: "removed before it ran",
  discarded: "removed from the dead-letter",
};

/** A state as a word with its colour: the colour helps, the word says it. */
export function stateBadge(state: string): Html {
  return html`<span class="state" data-state="${state}" title="${STATE_HINTS[state] ?? state}">${state.replace("_", " ")}</span>`;
}

/** An absolute UTC time with how long ago (or ahead) it is. */
export function timeCell(date: Date | null, now: Date): Html {
  if (!date) return html`<span class="muted">–</span>`;
  return html`<time datetime="${date.toISOString()}" title="${date.toISOString()}">${formatUtc(date)}</time> <span class="muted">(${relative(date, now)})</span>`;
}

function formatUtc(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function relative(date: Date, now: Date): string {
  const seconds = Math.round((date.getTime() - now.getTime()) / 1000);
  const text = formatDuration(Math.abs(seconds));
  if (Math.abs(seconds) < 1) return "now";
  return seconds < 0 ? `${text} ago` : `in ${text}`;
}

export function formatDuration(totalSeconds: number): string {
  if (totalSeconds < 60) return `${Math.round(totalSeconds)} s`;
  if (totalSeconds < 3600) return `${Math.floor(totalSeconds / 60)} min ${Math.round(totalSeconds % 60)} s`;
  if (totalSeconds < 86_400) return `${Math.floor(totalSeconds / 3600)} h ${Math.floor((totalSeconds % 3600) / 60)} min`;
  return `${Math.floor(totalSeconds / 86_400)} d ${Math.floor((totalSeconds % 86_400) / 3600)} h`;
}

/** A value as indented JSON text (escaped like any other text). */
export function jsonBlock(value: unknown, label: string): Html {
  return html`<pre class="json" tabindex="0" aria-label="${label}"><code>${JSON.stringify(value, null, 2) ?? "null"}</code></pre>`;
}

/** A table; on a phone its rows become cards, each value labelled with its column (data-label). */
export function table(caption: string, head: string[], rows: HtmlValue[][], options: { empty?: string } = {}): Html {
  if (rows.length === 0) return html`<p class="empty">${options.empty ?? "Nothing to show."}</p>`;
  // The scrollable region is named apart from the section around it, so no two landmarks share a name.
  return html`<div class="table-wrap" tabindex="0" role="region" aria-label="Table: ${caption}"><table class="cards">
    <caption class="visually-hidden">${caption}</caption>
    <thead><tr>${head.map((cell) => html`<th scope="col">${cell}</th>`)}</tr></thead>
    <tbody>${rows.map((row) => html`<tr>${row.map((cell, index) => html`<td data-label="${head[index] ?? ""}">${cell}</td>`)}</tr>`)}</tbody>
  </table></div>`;
}

/** A query string from the set values only, for links that keep a page's filters. */
export function queryString(values: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) if (value !== undefined && value !== "") params.set(key, value);
  const text = params.toString();
  return text ? `?${text}` : "";
}
