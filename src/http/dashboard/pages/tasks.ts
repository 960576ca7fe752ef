/**
 * Tasks and schedules: every task with its defaults and payload schema; every crontab entry in
 * words, with its next fire time and, from history, its last run and last success; and a "run now"
 * form per task, generated from its payload schema, that enqueues through the same `enqueueJob`
 * (and so the same validation) as the API, recorded as source http with the operator as actor.
 * Each task's page also pauses and resumes it, its cap group and its default queue (./pauses.ts).
 */
import cronstrue from "cronstrue";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { CronStatus } from "../../../cron/freshness.ts";
import { findRecords } from "../../../db/repositories/job-records.ts";
import type { JobPhase } from "../../../db/tables/job-records.ts";
import { readSource } from "../sources.ts";
import { checkPayload, enqueueJob, InvalidPayloadError } from "../../../enqueue.ts";
import type { RegisteredTask } from "../../../registry.ts";
import type { EnqueueOptions } from "../../../task.ts";
import { describeSchedules, type Schedule } from "../../../cron/schedules.ts";
import { findPauses, type Pause } from "../../../db/repositories/pauses.ts";
import { pauseHolding } from "../../../lifecycle/pauses.ts";
import { operatorOf, sendPage, type DashboardContext, type PageHandler } from "../context.ts";
import { setFlash } from "../flash.ts";
import { html, type Html } from "../html.ts";
import { csrfField, jsonBlock, notice, stateBadge, table, timeCell } from "../layout.ts";
import { errorsByField, fieldsFromSchema, payloadFromForm, renderFields } from "../schema-form.ts";
import { DONE_MESSAGES } from "./jobs.ts";
import { pauseControl, pausedBadge } from "./pauses.ts";

/** "At 03:30 AM" style wording of a crontab expression (always UTC here). */
function describeCron(expression: string): string {
  try {
    return `${cronstrue.toString(expression, { use24HourTimeFormat: true, verbose: false })} (UTC)`;
  } catch {
    return expression;
  }
}

interface OptionValues {
  maxAttempts: string;
  priority: string;
}

export function taskRoutes(context: DashboardContext) {
  const { deps } = context;
  const { db, registry } = deps;

  // Each entry's last run, last success and overdue flag: the one cron-freshness source /metrics, /tasks and /ready read.
  async function scheduleRows(schedules: Schedule[], now: Date, pauses: Pause[]) {
    const freshness = await readSource(() => deps.cronFreshness.read(), deps.logger);
    const statuses = new Map<string, CronStatus>(freshness.available ? freshness.items.map((status) => [status.id, status]) : []);
    // The state of each last run now (its record), for its badge.
    const runIds = [...statuses.values()].flatMap((status) => status.lastRunJobId ?? []);
    const phases = new Map((await findRecords(db, runIds)).map((record) => [String(record.id), record.phase]));
    return {
      freshness,
      rows: schedules.map((schedule) => {
        const status = statuses.get(schedule.id);
        const task = registry.find(schedule.task);
        // A paused entry is never overdue (src/cron/freshness.ts): it says why instead.
        const held = task ? pauseHolding(pauses, task, task.defaults.queueName) : undefined;
        return [
          html`<code>${schedule.id}</code>${status?.overdue ? html` <strong class="overdue-flag">OVERDUE</strong>` : ""}${held ? html` ${pausedBadge(held)}` : ""}`,
          html`<a href="/dashboard/tasks/${schedule.task}">${schedule.task}</a>`,
          html`${describeCron(schedule.expression)}<br><code class="muted">${schedule.expression}</code>`,
          timeCell(schedule.nextRunAt, now),
          runCell(status?.lastRunJobId ?? null, status?.lastRunAt ?? null, status?.lastRunJobId ? phases.get(status.lastRunJobId) : undefined, now),
          runCell(status?.lastSuccessJobId ?? null, status?.lastSuccessAt ?? null, "succeeded", now),
        ];
      }),
    };
  }

  const scheduleHead = ["Entry", "Task", "Schedule", "Next fire", "Last run", "Last success"];

  const listPage: PageHandler = async (request, reply) => {
    const now = new Date();
    const schedules = describeSchedules(deps.crontab, now);
    const pauses = await findPauses(db);
    const { rows, freshness } = await scheduleRows(schedules, now, pauses);
    return sendPage(request, reply, {
      title: "Tasks & schedules",
      section: "tasks",
      body: html`
        <section aria-labelledby="tasks-heading"><h2 id="tasks-heading">Tasks</h2>
          ${table(
            "Tasks",
            ["Task", "What it does", "Queue", "Max attempts", "Time limit", "Run"],
            registry.all().map((task) => [
              html`<a href="/dashboard/tasks/${task.name}">${task.name}</a> ${pausedBadge(pauseHolding(pauses, task, task.defaults.queueName))}`,
              task.description,
              task.defaults.queueName ?? html`<span class="muted">none</span>`,
              task.defaults.maxAttempts,
              `${task.defaults.timeoutMs / 1000} s`,
              task.internal ? html`<span class="muted">internal (crontab only)</span>` : html`<a href="/dashboard/tasks/${task.name}#run-now">Run now…</a>`,
            ]),
          )}</section>
        <section aria-labelledby="schedules-heading"><h2 id="schedules-heading">Schedules (crontab)</h2>
          ${freshness.available ? "" : html`<p class="unavailable">Last runs and overdue detection: ${freshness.reason}.</p>`}
          ${table("Crontab entries", scheduleHead, rows, { empty: "The crontab has no entries." })}
          <p class="muted">Last run and last success: the entry's newest job, as cron freshness keeps it (also past history's retention; as /metrics and GET /tasks report it).</p></section>`,
    });
  };

  const taskPage: PageHandler = async (request, reply) => {
    const task = registry.find((request.params as { name: string }).name);
    if (!task) return taskNotFound(request, reply);
    return sendTaskPage(request, reply, task, { values: {}, options: { maxAttempts: "", priority: "" }, errors: [] });
  };

  const run: PageHandler = async (request, reply) => {
    const task = registry.find((request.params as { name: string }).name);
    if (!task) return taskNotFound(request, reply);
    if (task.internal) {
      return sendPage(request, reply, { title: task.name, section: "tasks", body: html`<p>Task ${task.name} is internal: it runs from the crontab only.</p>` }, 403);
    }
    const form = request.body instanceof URLSearchParams ? request.body : new URLSearchParams();
    const fields = fieldsFromSchema(task.schema);
    const parsed = payloadFromForm(fields, form);
    const optionValues: OptionValues = { maxAttempts: form.get("option.maxAttempts") ?? "", priority: form.get("option.priority") ?? "" };
    const { options, errors: optionErrors } = parseOptions(optionValues);
    const errors = [...parsed.errors, ...optionErrors];
    const operator = operatorOf(request);
    if (parsed.errors.length === 0) {
      try {
        if (errors.length === 0) {
          const job = await enqueueJob(db, registry, task.name, parsed.payload, options, { source: "http", actor: operator.id });
          request.log.info({ operator: operator.id, jobId: job.id, task: task.name }, "job enqueued by operator (dashboard)");
          setFlash(request, reply, { kind: "ok", text: DONE_MESSAGES.enqueued! });
          return reply.redirect(`/dashboard/jobs/${job.id}`, 303);
        }
        // A bad option stops the enqueue; still say everything that is wrong with the payload at once.
        checkPayload(task, parsed.payload);
      } catch (error) {
        if (!(error instanceof InvalidPayloadError)) throw error;
        errors.push(...error.errors);
      }
    }
    return sendTaskPage(request, reply, task, { values: parsed.values, options: optionValues, errors }, 400);
  };

  async function sendTaskPage(
    request: FastifyRequest,
    reply: FastifyReply,
    task: RegisteredTask,
    form: { values: Record<string, string>; options: OptionValues; errors: string[] },
    statusCode = 200,
  ) {
    const now = new Date();
    const schedules = describeSchedules(deps.crontab, now).filter((schedule) => schedule.task === task.name);
    const pauses = await findPauses(db);
    const { rows } = await scheduleRows(schedules, now, pauses);
    const operator = operatorOf(request);
    const pauseOf = (kind: Pause["kind"], name: string) => pauses.find((held) => held.kind === kind && held.name === name);
    const group = task.defaults.concurrency?.group;
    const queue = task.defaults.queueName;
    const { defaults } = task;
    const { byField, general } = errorsByField(form.errors);
    const optionErrors = general.filter((error) => error.startsWith("option "));
    const otherErrors = general.filter((error) => !error.startsWith("option "));
    return sendPage(
      request,
      reply,
      {
        title: task.name,
        section: "tasks",
        notice: form.errors.length > 0 ? { kind: "error", text: `The job was not enqueued: ${form.errors.join("; ")}` } : null,
        body: html`
          <p>${task.description}</p>
          <section aria-labelledby="defaults-heading"><h2 id="defaults-heading">Defaults</h2>
            <dl class="facts">
              <div><dt>Queue</dt><dd>${defaults.queueName ?? html`<span class="muted">none</span>`}</dd></div>
              <div><dt>Max attempts</dt><dd>${defaults.maxAttempts}</dd></div>
              <div><dt>Priority</dt><dd>${defaults.priority}</dd></div>
              <div><dt>Time limit</dt><dd>${defaults.timeoutMs / 1000} s</dd></div>
              <div><dt>Concurrency</dt><dd>${defaults.concurrency ? `${defaults.concurrency.limit} at once ${defaults.concurrency.scope === "global" ? "across all instances" : "per instance"} (group ${defaults.concurrency.group})` : "no cap"}</dd></div>
              <div><dt>Job key mode</dt><dd>${defaults.jobKeyMode}</dd></div>
              <div><dt>Internal</dt><dd>${task.internal ? "yes: runs from the crontab only" : "no"}</dd></div>
            </dl></section>
          <section aria-labelledby="pause-heading"><h2 id="pause-heading">Pause</h2>
            <p>${pauseHolding(pauses, task, queue) ? pausedBadge(pauseHolding(pauses, task, queue)) : html`<span class="muted">Not paused: its jobs run as they come.</span>`}</p>
            <p class="muted">A pause stops new attempts on every instance within about a second; running attempts finish, and jobs keep arriving and wait until the resume.</p>
            <div class="job-actions">
              ${pauseControl(operator, "task", task.name, pauseOf("task", task.name), `/dashboard/tasks/${task.name}`)}
              ${group ? pauseControl(operator, "group", group, pauseOf("group", group), `/dashboard/tasks/${task.name}`) : ""}
              ${queue ? pauseControl(operator, "queue", queue, pauseOf("queue", queue), `/dashboard/tasks/${task.name}`) : ""}
            </div></section>
          <section aria-labelledby="schedules-heading"><h2 id="schedules-heading">Schedules</h2>
            ${table(`Crontab entries of ${task.name}`, scheduleHead, rows, { empty: "Not in the crontab: it runs when enqueued." })}</section>
          <section aria-labelledby="run-now"><h2 id="run-now">Run now</h2>
            ${task.internal ? html`<p>Internal tasks cannot be started by hand.</p>` : runNowForm(task, form, byField, optionErrors, otherErrors, csrfField(operator))}</section>
          <section aria-labelledby="schema-heading"><h2 id="schema-heading">Payload schema</h2>
            ${jsonBlock(task.schema, `Payload schema of ${task.name}`)}</section>`,
      },
      statusCode,
    );
  }

  return { "GET /tasks": listPage, "GET /tasks/:name": taskPage, "POST /tasks/:name/run": run };
}

function runNowForm(
  task: RegisteredTask,
  form: { values: Record<string, string>; options: OptionValues },
  byField: Map<string, string[]>,
  optionErrors: string[],
  otherErrors: string[],
  csrf: Html,
): Html {
  const fields = fieldsFromSchema(task.schema);
  return html`<form method="post" action="/dashboard/tasks/${task.name}/run" class="run-now" novalidate>
    ${csrf}
    ${otherErrors.length > 0 ? notice({ kind: "error", text: otherErrors.join("; ") }) : ""}
    <fieldset><legend>Payload</legend>
      ${fields.length > 0 ? renderFields(fields, form.values, byField) : html`<p class="muted">This task takes no payload.</p>`}
    </fieldset>
    <fieldset><legend>Options</legend>
      ${optionErrors.length > 0 ? html`<ul class="field-errors">${optionErrors.map((error) => html`<li>${error}</li>`)}</ul>` : ""}
      <div class="field"><label for="option-maxAttempts">Max attempts</label>
        <input type="text" inputmode="numeric" id="option-maxAttempts" name="option.maxAttempts" value="${form.options.maxAttempts}" aria-describedby="option-maxAttempts-help">
        <p class="help" id="option-maxAttempts-help"><span class="muted">(default ${task.defaults.maxAttempts})</span></p></div>
      <div class="field"><label for="option-priority">Priority</label>
        <input type="text" inputmode="numeric" id="option-priority" name="option.priority" value="${form.options.priority}" aria-describedby="option-priority-help">
        <p class="help" id="option-priority-help"><span class="muted">(lower runs first; default ${task.defaults.priority})</span></p></div>
    </fieldset>
    <button type="submit">Enqueue ${task.name}</button>
  </form>`;
}

function parseOptions(values: OptionValues): { options: EnqueueOptions; errors: string[] } {
  const options: EnqueueOptions = {};
  const errors: string[] = [];
  const integer = (text: string, name: string, min: number, max: number) => {
    const value = Number(text);
    if (/^-?\d+$/.test(text) && value >= min && value <= max) return value;
    errors.push(`option ${name} must be a whole number from ${min} to ${max}`);
    return undefined;
  };
  if (values.maxAttempts.trim()) {
    const value = integer(values.maxAttempts.trim(), "maxAttempts", 1, 32767);
    if (value !== undefined) options.maxAttempts = value;
  }
  if (values.priority.trim()) {
    const value = integer(values.priority.trim(), "priority", -32768, 32767);
    if (value !== undefined) options.priority = value;
  }
  return { options, errors };
}

/** A run of an entry: its job, the job's state when known (its record may be past retention), and when. */
function runCell(jobId: string | null, at: Date | null, phase: JobPhase | undefined, now: Date): Html {
  if (!jobId) return html`<span class="muted">never (in history)</span>`;
  return html`<a href="/dashboard/jobs/${jobId}">job ${jobId}</a>${phase ? html` ${stateBadge(phase === "waiting" ? "queued" : phase)}` : ""}<br>${timeCell(at, now)}`;
}

function taskNotFound(request: FastifyRequest, reply: FastifyReply) {
  return sendPage(request, reply, { title: "Task not found", section: "tasks", body: html`<p>No such task. <a href="/dashboard/tasks">All tasks</a></p>` }, 404);
}
