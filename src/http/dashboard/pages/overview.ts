/**
 * Overview: jobs per state, the last hour's outcomes, the current lag, worker pools and overdue
 * cron entries. Live states come from the cached queue stats (one query per few seconds however
 * many people watch), finished ones from time-bounded, index-backed history queries.
 */
import { countFinishedSince, findRecentOutcomes } from "../queries/activity.ts";
import type { CronStatus } from "../../../cron/freshness.ts";
import { readSource, type SourceReading, type WorkerPoolStatus } from "../sources.ts";
import type { QueueDepth } from "../../../lifecycle/queue-stats.ts";
import { outcomesChart } from "../chart.ts";
import { sendFragments, sendPage, type DashboardContext, type PageHandler } from "../context.ts";
import { html, type Html } from "../html.ts";
import { formatDuration, queryString, stateBadge, table, timeCell } from "../layout.ts";

const DAY_MS = 24 * 60 * 60 * 1000;

export function overviewRoutes(context: DashboardContext) {
  const { deps, sources } = context;

  async function fragments(): Promise<Record<string, Html>> {
    const now = new Date();
    const [stats, outcomes, finished, pools, overdue] = await Promise.all([
      deps.queueStats.read(),
      findRecentOutcomes(deps.db, now),
      countFinishedSince(deps.db, new Date(now.getTime() - DAY_MS)),
      readSource(sources.workerPools, deps.logger),
      // The one cron-freshness source (/metrics, GET /tasks and /ready read it too).
      readSource(async () => (await deps.cronFreshness.read()).filter((status) => status.overdue), deps.logger),
    ]);
    return {
      counts: counts(stats.depths, finished, stats.at, now),
      chart: outcomesChart(outcomes),
      pools: workerPools(pools, now),
      overdue: overdueSchedules(overdue, now),
    };
  }

  const page: PageHandler = async (request, reply) => {
    const parts = await fragments();
    return sendPage(request, reply, {
      title: "Overview",
      section: "overview",
      live: { src: "/dashboard/live/overview" },
      body: html`
        <section aria-labelledby="counts-heading"><h2 id="counts-heading">Jobs by state</h2>
          <div data-live-fragment="counts">${parts.counts}</div></section>
        <section aria-labelledby="chart-heading"><h2 id="chart-heading">Last hour</h2>
          <div data-live-fragment="chart">${parts.chart}</div></section>
        <section aria-labelledby="pools-heading"><h2 id="pools-heading">Worker pools</h2>
          <div data-live-fragment="pools">${parts.pools}</div></section>
        <section aria-labelledby="overdue-heading"><h2 id="overdue-heading">Overdue cron entries</h2>
          <div data-live-fragment="overdue">${parts.overdue}</div></section>`,
    });
  };

  const live: PageHandler = async (_request, reply) => sendFragments(reply, await fragments());

  return { "GET /": page, "GET /live/overview": live };
}

function counts(depths: QueueDepth[], finished: Record<string, number>, measuredAt: Date, now: Date): Html {
  const sum = (key: "ready" | "scheduled" | "running" | "retryWait" | "dead") => depths.reduce((total, depth) => total + depth[key], 0);
  const lag = Math.max(0, ...depths.map((depth) => depth.oldestReadyAgeSeconds ?? 0));
  const live = [
    { state: "queued", count: sum("ready") },
    { state: "scheduled", count: sum("scheduled") },
    { state: "running", count: sum("running") },
    { state: "retry_wait", count: sum("retryWait") },
    { state: "dead", count: sum("dead") },
  ];
  const done = ["succeeded", "cancelled", "discarded"].map((state) => ({ state, count: finished[state] ?? 0 }));
  const tile = (item: { state: string; count: number }, scope: string) =>
    html`<li class="tile"><a href="/dashboard/jobs${queryString({ state: item.state })}">
      <span class="tile-count" data-count="${item.state}">${item.count}</span> ${stateBadge(item.state)}
      <span class="muted tile-scope">${scope}</span></a></li>`;
  return html`<ul class="tiles">
      ${live.map((item) => tile(item, "now"))}
      ${done.map((item) => tile(item, "last 24 h"))}
    </ul>
    <p class="lag">Lag (oldest ready job waiting): <strong data-lag>${lag > 0 ? formatDuration(lag) : "none"}</strong>
      <span class="muted">· measured ${timeCell(measuredAt, now)}</span></p>`;
}

function workerPools(reading: SourceReading<WorkerPoolStatus>, now: Date): Html {
  if (!reading.available) return html`<p class="unavailable">Worker pools: ${reading.reason}.</p>`;
  return table(
    "Worker pools",
    ["Pool", "Instance", "Runner", "Status", "Last heartbeat"],
    reading.items.map((pool) => [
      html`<code>${pool.id}</code>`,
      pool.instance,
      pool.runner ?? html`<span class="muted">–</span>`,
      html`<span class="pool-status" data-status="${pool.status}">${pool.status}</span>`,
      timeCell(pool.lastSeen, now),
    ]),
    { empty: "No worker pool has reported a heartbeat." },
  );
}

function overdueSchedules(reading: SourceReading<CronStatus>, now: Date): Html {
  if (!reading.available) return html`<p class="unavailable">Overdue cron entries: ${reading.reason}.</p>`;
  if (reading.items.length === 0) return html`<p class="ok-text">No cron entry is overdue.</p>`;
  return html`<div class="overdue">${table(
    "Overdue cron entries",
    ["Entry", "Task", "Overdue since", "Last fired"],
    reading.items.map((item) => [
      html`<strong>OVERDUE</strong> <code>${item.id}</code>`,
      html`<a href="/dashboard/tasks/${item.task}">${item.task}</a>`,
      timeCell(item.overdueSince, now),
      timeCell(item.lastRunAt, now),
    ]),
  )}</div>`;
}
