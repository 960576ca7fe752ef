/** Queues: depth and lag per queue, and per task within it, from the cached queue stats. */
import type { FastifyInstance } from "fastify";
import type { QueueDepth } from "../../../lifecycle/queue-stats.ts";
import { sendFragments, sendPage, type DashboardContext } from "../context.ts";
import { html, type Html } from "../html.ts";
import { formatDuration, queryString, table, timeCell } from "../layout.ts";

const NO_QUEUE = "(no named queue)";

export function registerQueues(app: FastifyInstance, { deps }: DashboardContext): void {
  async function fragments(): Promise<Record<string, Html>> {
    const { at, depths } = await deps.queueStats.read();
    return { queues: queuesTable(depths, at, new Date()) };
  }

  app.get("/queues", async (request, reply) => {
    const parts = await fragments();
    return sendPage(request, reply, {
      title: "Queues",
      section: "queues",
      live: { src: "/dashboard/live/queues" },
      body: html`<p class="muted">A named queue runs its jobs one at a time, in order; jobs without one run in parallel up to the worker's concurrency.
        Lag is how long the oldest ready job has waited past its run time.</p>
        <div data-live-fragment="queues">${parts.queues}</div>`,
    });
  });

  app.get("/live/queues", async (_request, reply) => sendFragments(reply, await fragments()));
}

interface QueueTotals {
  queue: string | null;
  tasks: QueueDepth[];
  ready: number;
  scheduled: number;
  running: number;
  retryWait: number;
  dead: number;
  lag: number | null;
}

function queuesTable(depths: QueueDepth[], measuredAt: Date, now: Date): Html {
  const byQueue = new Map<string | null, QueueTotals>();
  for (const depth of depths) {
    const totals = byQueue.get(depth.queue) ?? { queue: depth.queue, tasks: [], ready: 0, scheduled: 0, running: 0, retryWait: 0, dead: 0, lag: null };
    totals.tasks.push(depth);
    totals.ready += depth.ready;
    totals.scheduled += depth.scheduled;
    totals.running += depth.running;
    totals.retryWait += depth.retryWait;
    totals.dead += depth.dead;
    if (depth.oldestReadyAgeSeconds !== null) totals.lag = Math.max(totals.lag ?? 0, depth.oldestReadyAgeSeconds);
    byQueue.set(depth.queue, totals);
  }
  const lag = (seconds: number | null) => (seconds === null ? html`<span class="muted">none</span>` : html`<strong>${formatDuration(seconds)}</strong>`);
  const rows = [...byQueue.values()].flatMap((totals) => [
    [
      html`<strong>${totals.queue ?? NO_QUEUE}</strong>`,
      html`<span class="muted">all tasks</span>`,
      totals.ready,
      totals.scheduled,
      totals.running,
      totals.retryWait,
      totals.dead,
      lag(totals.lag),
    ],
    ...totals.tasks.map((depth) => [
      html`<span class="visually-hidden">${totals.queue ?? NO_QUEUE}</span>`,
      html`<a href="/dashboard/jobs${queryString({ task: depth.task, queue: depth.queue ?? undefined })}">${depth.task}</a>`,
      depth.ready,
      depth.scheduled,
      depth.running,
      depth.retryWait,
      depth.dead,
      lag(depth.oldestReadyAgeSeconds),
    ]),
  ]);
  return html`${table("Queue depth and lag", ["Queue", "Task", "Ready", "Scheduled", "Running", "Retry wait", "Dead", "Lag"], rows, {
    empty: "No job is waiting, running or dead.",
  })}
    <p class="muted">Measured ${timeCell(measuredAt, now)} (figures are cached for a few seconds).</p>`;
}
