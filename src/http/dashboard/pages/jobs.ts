/**
 * Jobs: the filterable list (newest first, keyset-paginated by id through `listJobs`, whose
 * filters all have indexes), a job's page (payload as stored in history, attempts, errors with
 * their stacks, the timeline) and the operator actions its state allows.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import {
  actionApplies,
  applicableActions,
  cancelJob,
  discardJob,
  findJob,
  hasPendingChildren,
  IllegalTransitionError,
  JOB_STATES,
  JobNotFoundError,
  listJobs,
  retryJob,
  type JobAction,
  type JobDetails,
  type JobFilter,
  type JobState,
  type TimelineEvent,
} from "../../../lifecycle/jobs.ts";
import { isJobId, parseInstant } from "../../../input-limits.ts";
import { setFlash } from "../flash.ts";
import { operatorOf, sendFragments, sendPage, type DashboardContext, type PageHandler } from "../context.ts";
import { html, type Html } from "../html.ts";
import { csrfField, formatDuration, jsonBlock, notice, queryString, stateBadge, table, timeCell, type Notice, type Operator } from "../layout.ts";

const PAGE_SIZE = 50;

/** How the page offers each action; whether it applies is the lifecycle module's rule (applicableActions), the one the API enforces. */
const ACTION_FORMS = {
  retry: { run: retryJob, label: "Retry", explain: () => "It goes back to the queue now with its attempts reset; its history is kept." },
  cancel: { run: cancelJob, label: "Cancel", explain: cancelExplanation },
  discard: { run: discardJob, label: "Discard", explain: () => "It leaves the dead-letter for good; its history stays until retention removes it." },
} as const satisfies Record<JobAction, { run: unknown; label: string; explain: (job: JobDetails) => string }>;

/** A fan-out's cancel also removes its children that have not started, whether or not the job itself can still be removed. */
function cancelExplanation(job: JobDetails): string {
  const itself = actionApplies("cancel", { state: job.state, children: null });
  const pending = hasPendingChildren(job) ? job.children!.waiting : 0;
  if (pending === 0) return "It is removed from the queue and will not run.";
  const children = `the ${pending} jobs it enqueued that have not started`;
  return itself
    ? `It is removed from the queue and will not run, and so are ${children}.`
    : `The job itself (${job.state}) is not changed; ${children} are removed from the queue (jobs already running finish).`;
}

/** What the job's page says after an action (carried by a signed flash cookie, never by the URL). */
export const DONE_MESSAGES: Record<string, string> = {
  retry: "Job retried: it is back in the queue.",
  cancel: "Job cancelled.",
  discard: "Job discarded from the dead-letter.",
  enqueued: "Job enqueued.",
};

interface ListQuery {
  task?: string;
  state?: string;
  queue?: string;
  from?: string;
  to?: string;
  cursor?: string;
}

export function jobRoutes({ deps }: DashboardContext) {
  const { db, registry } = deps;

  const listPage: PageHandler = async (request, reply) => {
    const raw = request.query as Record<string, string | string[] | undefined>;
    const query: ListQuery = Object.fromEntries(
      (["task", "state", "queue", "from", "to", "cursor"] as const).map((key) => [key, firstValue(raw[key])]),
    );
    const { filter, errors } = parseFilter(query);
    const now = new Date();
    const page = errors.length === 0 ? await listJobs(db, filter) : { jobs: [], nextCursor: null };
    const values = { task: query.task, state: query.state, queue: query.queue, from: query.from, to: query.to };
    const queues = [...new Set((await deps.queueStats.read()).depths.flatMap((depth) => depth.queue ?? []).concat(registry.all().flatMap((task) => task.defaults.queueName ?? [])))].sort();
    const rows = page.jobs.map((job) => [
      html`<a href="/dashboard/jobs/${job.id}">${job.id}</a>`,
      job.task,
      stateBadge(job.state),
      job.queue ?? html`<span class="muted">–</span>`,
      job.source,
      `${job.attempts}/${job.maxAttempts}`,
      timeCell(job.createdAt, now),
      job.lastError ? html`<span class="error-text">${truncate(job.lastError, 120)}</span>` : html`<span class="muted">–</span>`,
    ]);
    const pager = html`<nav class="pager" aria-label="Pages">
      ${query.cursor ? html`<a href="/dashboard/jobs${queryString(values)}">← Newest</a>` : ""}
      ${page.nextCursor ? html`<a rel="next" href="/dashboard/jobs${queryString({ ...values, cursor: page.nextCursor })}">Older jobs →</a>` : ""}
    </nav>`;
    return sendPage(
      request,
      reply,
      {
        title: "Jobs",
        section: "jobs",
        body: html`
          <form method="get" action="/dashboard/jobs" class="filters" aria-label="Filter jobs">
            <div class="field"><label for="filter-task">Task</label>
              <select id="filter-task" name="task"><option value="">any</option>
              ${registry.names().map((name) => html`<option${name === query.task ? html` selected` : ""}>${name}</option>`)}</select></div>
            <div class="field"><label for="filter-state">State</label>
              <select id="filter-state" name="state"><option value="">any</option>
              ${JOB_STATES.map((state) => html`<option${state === query.state ? html` selected` : ""}>${state}</option>`)}</select></div>
            <div class="field"><label for="filter-queue">Queue</label>
              <input id="filter-queue" name="queue" list="known-queues" value="${query.queue ?? ""}">
              <datalist id="known-queues">${queues.map((queue) => html`<option value="${queue}"></option>`)}</datalist></div>
            <div class="field"><label for="filter-from">Created from (UTC)</label>
              <input id="filter-from" name="from" type="datetime-local" value="${query.from ?? ""}"></div>
            <div class="field"><label for="filter-to">Created before (UTC)</label>
              <input id="filter-to" name="to" type="datetime-local" value="${query.to ?? ""}"></div>
            <div class="field actions"><button type="submit">Filter</button> <a href="/dashboard/jobs">Clear</a></div>
          </form>
          ${errors.length > 0 ? notice({ kind: "error", text: errors.join("; ") }) : ""}
          ${table("Jobs, newest first", ["Id", "Task", "State", "Queue", "Source", "Attempts", "Created", "Last error"], rows, { empty: "No job matches." })}
          ${pager}`,
      },
      errors.length > 0 ? 400 : 200,
    );
  };

  const jobPage: PageHandler = async (request, reply) => {
    const { id } = request.params as { id: string };
    if (!isJobId(id)) return jobNotFound(request, reply, id);
    const job = await findJob(db, id);
    if (!job) return jobNotFound(request, reply, id);
    return sendJobPage(request, reply, job, null);
  };

  const jobLive: PageHandler = async (request, reply) => {
    const { id } = request.params as { id: string };
    const job = isJobId(id) ? await findJob(db, id) : null;
    if (!job) throw new JobNotFoundError(id);
    return sendFragments(reply, jobFragments(job, operatorOf(request), new Date()));
  };

  const act: PageHandler = async (request, reply) => {
    const { id, action } = request.params as { id: string; action: string };
    if (!Object.hasOwn(ACTION_FORMS, action)) return reply.callNotFound();
    if (!isJobId(id)) return jobNotFound(request, reply, id);
    const operator = operatorOf(request);
    try {
      await ACTION_FORMS[action as JobAction].run(db, id, operator.id);
    } catch (error) {
      if (error instanceof JobNotFoundError) return jobNotFound(request, reply, id);
      if (error instanceof IllegalTransitionError) {
        const job = await findJob(db, id);
        if (job) return sendJobPage(request, reply, job, { kind: "error", text: error.message }, 409);
        return jobNotFound(request, reply, id);
      }
      throw error;
    }
    request.log.info({ operator: operator.id, jobId: id, action }, `job ${action} by operator (dashboard)`);
    setFlash(request, reply, { kind: "ok", text: DONE_MESSAGES[action]! });
    return reply.redirect(`/dashboard/jobs/${id}`, 303);
  };

  return { "GET /jobs": listPage, "GET /jobs/:id": jobPage, "GET /jobs/:id/live": jobLive, "POST /jobs/:id/:action": act };
}

function sendJobPage(request: FastifyRequest, reply: FastifyReply, job: JobDetails, message: Notice | null, statusCode = 200): FastifyReply {
  const parts = jobFragments(job, operatorOf(request), new Date());
  return sendPage(
    request,
    reply,
    {
      title: `Job ${job.id}: ${job.task}`,
      section: "jobs",
      notice: message,
      live: { src: `/dashboard/jobs/${job.id}/live`, intervalMs: 2000 },
      body: html`
        <div data-live-fragment="summary">${parts.summary}</div>
        <section aria-labelledby="payload-heading"><h2 id="payload-heading">Payload</h2>
          <p class="muted">As stored in history: sensitive fields redacted, large payloads summarised.</p>
          ${jsonBlock(job.payload, `Payload of job ${job.id}`)}</section>
        <section aria-labelledby="result-heading"><h2 id="result-heading">Result</h2>
          <div data-live-fragment="result">${parts.result}</div></section>
        <section aria-labelledby="timeline-heading"><h2 id="timeline-heading">History</h2>
          <div data-live-fragment="timeline">${parts.timeline}</div></section>`,
    },
    statusCode,
  );
}

function jobNotFound(request: FastifyRequest, reply: FastifyReply, id: string): FastifyReply {
  return sendPage(request, reply, { title: "Job not found", section: "jobs", body: html`<p>There is no job with id ${id}. <a href="/dashboard/jobs">All jobs</a></p>` }, 404);
}

/** What the handler returned, pretty-printed (and escaped, as everything in html``), once the job succeeded. */
function resultBlock(job: JobDetails): Html {
  if (job.result !== null) return html`<p class="muted">Redacted like payloads; at most 16 KiB of JSON (a larger result is kept as a marker).</p>${jsonBlock(job.result, `Result of job ${job.id}`)}`;
  if (job.state === "succeeded") return html`<p class="muted">The task returned no result.</p>`;
  if (job.state === "dead") return html`<p class="muted">None: the job did not succeed (a result is kept if a retry does).</p>`;
  if (job.state === "cancelled" || job.state === "discarded") return html`<p class="muted">None: the job was ${job.state} before it succeeded.</p>`;
  return html`<p class="muted">None yet: a result is kept when the job succeeds.</p>`;
}

function jobFragments(job: JobDetails, operator: Operator, now: Date): { summary: Html; result: Html; timeline: Html } {
  const actions = applicableActions(job);
  const summary = html`<section aria-labelledby="summary-heading" class="job-summary">
    <h2 id="summary-heading" class="visually-hidden">Summary</h2>
    <dl class="facts">
      <div><dt>State</dt><dd data-job-state="${job.state}">${stateBadge(job.state)}</dd></div>
      <div><dt>Task</dt><dd><a href="/dashboard/tasks/${job.task}">${job.task}</a></dd></div>
      <div><dt>Queue</dt><dd>${job.queue ?? html`<span class="muted">none</span>`}</dd></div>
      <div><dt>Source</dt><dd>${job.source}</dd></div>
      <div><dt>Attempts</dt><dd>${job.attempts} of ${job.maxAttempts}</dd></div>
      <div><dt>Priority</dt><dd>${job.priority}</dd></div>
      <div><dt>Job key</dt><dd>${job.jobKey ? html`<code>${job.jobKey}</code>` : html`<span class="muted">none</span>`}</dd></div>
      <div><dt>Run at</dt><dd>${timeCell(job.runAt, now)}</dd></div>
      <div><dt>Created</dt><dd>${timeCell(job.createdAt, now)}</dd></div>
      <div><dt>Started</dt><dd>${timeCell(job.startedAt, now)}</dd></div>
      <div><dt>Finished</dt><dd>${timeCell(job.finishedAt, now)}</dd></div>
    </dl>
    ${job.lastError
      ? html`<div class="last-error"><h3>${job.state === "dead" || job.state === "retry_wait" ? "Last error" : "Error of an earlier attempt"}</h3>
          <pre class="error-text">${job.lastError}</pre></div>`
      : ""}
    ${actions.length > 0
      ? html`<div class="job-actions">${actions.map((name) => {
          const form = ACTION_FORMS[name];
          return confirmForm(`/dashboard/jobs/${job.id}/${name}`, operator, `${form.label}…`, html`${form.label} job ${job.id} (${job.task})? ${form.explain(job)}`, `Yes, ${form.label.toLowerCase()} it`, name === "discard");
        })}</div>`
      : ""}
  </section>`;
  return { summary, result: resultBlock(job), timeline: timeline(job.timeline, now) };
}

/**
 * An action behind a disclosure: the first click opens it and explains what will happen, the
 * second confirms. Confirmation without script, readable by screen readers.
 */
export function confirmForm(action: string, operator: Operator, opener: string, question: Html, confirm: string, danger = false, hidden: Html = html``): Html {
  return html`<details class="confirm"><summary class="button${danger ? " danger" : ""}">${opener}</summary>
    <form method="post" action="${action}">
      ${csrfField(operator)}${hidden}
      <p>${question}</p>
      <button type="submit" class="${danger ? "danger" : ""}">${confirm}</button>
    </form>
  </details>`;
}

function timeline(events: TimelineEvent[], now: Date): Html {
  return table(
    "History of the job, oldest first",
    ["When", "Event", "Attempt", "By", "Duration", "Error"],
    events.map((event) => [
      timeCell(event.at, now),
      html`<span class="event" data-event="${event.event}">${event.event}</span>`,
      event.attempt ?? "",
      who(event),
      event.duration_ms !== null ? formatDuration(event.duration_ms / 1000) : "",
      html`${event.error
        ? event.stack
          ? html`<details class="stack"><summary class="error-text">${truncate(event.error, 200)}</summary><pre>${event.stack}</pre></details>`
          : html`<span class="error-text">${event.error}</span>`
        : ""}${event.event === "failed" && event.run_at ? html`<span class="muted">next attempt ${timeCell(event.run_at, now)}</span>` : ""}`,
    ]),
    { empty: "No history recorded yet." },
  );
}

function who(event: TimelineEvent): Html | string {
  if (event.actor) return html`<strong>${event.actor}</strong>${event.source ? html` <span class="muted">via ${event.source}</span>` : ""}`;
  if (event.source) return html`<span class="muted">source</span> ${event.source}`;
  if (event.worker_id) return html`<span class="muted">worker</span> <code>${event.worker_id}</code>`;
  return "";
}

/** A query parameter given twice counts once: the first value. */
export function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function truncate(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

/**
 * datetime-local values ("2025-01-31T12:00") are read as UTC, as the labels say; full RFC 3339
 * times are accepted too. Either must be an instant the database holds (see parseInstant).
 */
function parseTime(text: string): Date | null {
  const local = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2}(\.\d+)?)?$/.exec(text);
  return parseInstant(local ? `${local[1]}${local[2] ?? ":00"}Z` : text);
}

function parseFilter(query: ListQuery): { filter: JobFilter; errors: string[] } {
  const filter: JobFilter = { limit: PAGE_SIZE };
  const errors: string[] = [];
  if (query.task) filter.task = query.task;
  if (query.queue) filter.queue = query.queue;
  if (query.state) {
    if ((JOB_STATES as readonly string[]).includes(query.state)) filter.state = query.state as JobState;
    else errors.push(`state must be one of ${JOB_STATES.join(", ")}`);
  }
  for (const key of ["from", "to"] as const) {
    const text = query[key];
    if (!text) continue;
    const date = parseTime(text);
    if (date) filter[key] = date;
    else errors.push(`${key} must be a date and time, got "${text}"`);
  }
  if (query.cursor) {
    if (isJobId(query.cursor)) filter.before = query.cursor;
    else errors.push("cursor must be a job id");
  }
  return { filter, errors };
}
