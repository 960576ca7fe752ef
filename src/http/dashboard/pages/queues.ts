/**
 * Queues: depth and lag per queue, and per task within it, from the cached queue stats; what is
 * paused, and the controls to pause and resume a named queue (src/http/dashboard/pages/pauses.ts).
 */
import { findPauses, type Pause } from "../../../db/repositories/pauses.ts";
import { pauseHolding } from "../../../lifecycle/pauses.ts";
import type { QueueDepth } from "../../../lifecycle/queue-stats.ts";
import type { TaskRegistry } from "../../../registry.ts";
import { operatorOf, sendFragments, sendPage, type DashboardContext, type PageHandler } from "../context.ts";
import { html, type Html } from "../html.ts";
import { formatDuration, queryString, table, timeCell, type Operator } from "../layout.ts";
import { pauseControl, pausedBadge, pausesList } from "./pauses.ts";

const NO_QUEUE = "(no named queue)";

export function queueRoutes({ deps }: DashboardContext) {
  async function fragments(operator: Operator): Promise<Record<string, Html>> {
    const [{ at, depths }, pauses] = await Promise.all([deps.queueStats.read(), findPauses(deps.db)]);
    const now = new Date();
    return { queues: queuesTable(depths, at, now, { operator, pauses, registry: deps.registry }), pauses: pausesList(operator, pauses, "/dashboard/queues", now) };
  }

  const page: PageHandler = async (request, reply) => {
    const parts = await fragments(operatorOf(request));
    return sendPage(request, reply, {
      title: "Queues",
      section: "queues",
      live: { src: "/dashboard/live/queues" },
      body: html`<p class="muted">A named queue runs its jobs one at a time, in order; jobs without one run in parallel up to the worker's concurrency.
        Lag is how long the oldest ready job has waited past its run time.</p>
        <div data-live-fragment="queues">${parts.queues}</div>
        <section aria-labelledby="pauses-heading"><h2 id="pauses-heading">Paused</h2>
          <p class="muted">A paused task, named queue or cap group starts no new attempt on any instance; running attempts finish, and its jobs keep arriving and wait until it is resumed.
          Pause a task or a cap group from its task's page.</p>
          <div data-live-fragment="pauses">${parts.pauses}</div></section>`,
    });
  };

  const live: PageHandler = async (request, reply) => sendFragments(reply, await fragments(operatorOf(request)));

  return { "GET /queues": page, "GET /live/queues": live };
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

function queuesTable(depths: QueueDepth[], measuredAt: Date, now: Date, paused: { operator: Operator; pauses: Pause[]; registry: TaskRegistry }): Html {
  const queuePause = (queue: string | null) => paused.pauses.find((held) => held.kind === "queue" && held.name === queue);
  const taskPause = (depth: QueueDepth) => {
    const task = paused.registry.find(depth.task);
    return task ? pauseHolding(paused.pauses, task, depth.queue) : queuePause(depth.queue);
  };
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
      html`<strong>${totals.queue ?? NO_QUEUE}</strong>${totals.queue === null ? "" : html` ${pausedBadge(queuePause(totals.queue))}
        ${pauseControl(paused.operator, "queue", totals.queue, queuePause(totals.queue), "/dashboard/queues")}`}`,
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
      html`<a href="/dashboard/jobs${queryString({ task: depth.task, queue: depth.queue ?? undefined })}">${depth.task}</a> ${pausedBadge(taskPause(depth))}`,
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
