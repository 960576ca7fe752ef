/**
 * Pausing from the dashboard: the paused state as the tasks and queues pages show it, the controls
 * behind a confirmation (with a reason), and the one form action both pages post to. The action
 * goes through src/lifecycle/pauses.ts as the API and the CLI do, recorded with the operator;
 * the dashboard's CSRF check and rate limit apply to it as to every other action.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { describePause, pause, PAUSE_KINDS, PAUSE_REASON_MAX_CHARS, resume, UnknownPauseTargetError, type Pause, type PauseKind } from "../../../lifecycle/pauses.ts";
import { operatorOf, sendPage, type DashboardContext, type PageHandler } from "../context.ts";
import { setFlash } from "../flash.ts";
import { html, type Html } from "../html.ts";
import { csrfField, timeCell, type Operator } from "../layout.ts";
import { confirmForm } from "./jobs.ts";

/** Pages a pause form may send the operator back to. */
const RETURN_PATH = /^\/dashboard\/(queues|tasks(\/[a-z][a-z0-9_]*)?)$/;

const WHAT: Record<PauseKind, string> = { task: "task", queue: "queue", group: "cap group" };

/** "paused" with who, since when and why, for a table cell or a task page. */
export function pausedBadge(held: Pause | undefined): Html {
  if (!held) return html``;
  return html`<span class="state" data-state="paused" title="${describePause(held)}">paused</span>
    <span class="muted">${held.kind === "task" ? "" : `(${WHAT[held.kind]} ${held.name}) `}by ${held.pausedBy}${held.reason ? `: ${held.reason}` : ""}</span>`;
}

/**
 * A Pause… or Resume… button for `kind`/`name`, each opening a confirmation that says what will
 * happen (the pause asks for an optional reason).
 */
export function pauseControl(operator: Operator, kind: PauseKind, name: string, held: Pause | undefined, back: string): Html {
  const what = `${WHAT[kind]} ${name}`;
  const target = html`<input type="hidden" name="kind" value="${kind}"><input type="hidden" name="name" value="${name}"><input type="hidden" name="back" value="${back}">`;
  if (held) {
    return confirmForm(
      "/dashboard/pauses/resume",
      operator,
      `Resume ${what}…`,
      html`Resume ${what}? Its waiting jobs start at once on every instance. (${describePause(held)})`,
      "Yes, resume it",
      false,
      target,
    );
  }
  const id = `pause-reason-${kind}-${name}`.replace(/[^\w-]/g, "_");
  // confirmForm's markup (./jobs.ts), with the reason asked after the question.
  return html`<details class="confirm"><summary class="button danger">Pause ${what}…</summary>
    <form method="post" action="/dashboard/pauses/pause">
      ${csrfField(operator)}${target}
      <p>Pause ${what}? Within about a second no new attempt starts on any instance; running attempts finish, and new jobs wait until it is resumed.</p>
      <div class="field"><label for="${id}">Reason <span class="muted">(optional, kept in the history)</span></label>
        <input type="text" id="${id}" name="reason" maxlength="${PAUSE_REASON_MAX_CHARS}"></div>
      <button type="submit" class="danger">Yes, pause it</button>
    </form>
  </details>`;
}

/** What is paused now, each with its Resume… control (the queues page's list). */
export function pausesList(operator: Operator, pauses: readonly Pause[], back: string, now: Date): Html {
  if (pauses.length === 0) return html`<p class="muted">Nothing is paused.</p>`;
  return html`<ul class="pauses">${pauses.map(
    (held) => html`<li><strong>${WHAT[held.kind]} ${held.name}</strong> <span class="state" data-state="paused">paused</span>
      by ${held.pausedBy} ${timeCell(held.pausedAt, now)}${held.reason ? html`: ${held.reason}` : ""}
      ${pauseControl(operator, held.kind, held.name, held, back)}</li>`,
  )}</ul>`;
}

/** POST /dashboard/pauses/pause and /dashboard/pauses/resume, what the tasks and queues pages' pause forms post to. */
export function pauseRoutes({ deps }: DashboardContext) {
  const act: PageHandler = async (request, reply) => {
    const { action } = request.params as { action: string };
    if (action !== "pause" && action !== "resume") return reply.callNotFound();
    const form = request.body instanceof URLSearchParams ? request.body : new URLSearchParams();
    const kind = form.get("kind") ?? "";
    const name = form.get("name") ?? "";
    const reason = form.get("reason") ?? "";
    const back = RETURN_PATH.test(form.get("back") ?? "") ? form.get("back")! : "/dashboard/queues";
    if (!(PAUSE_KINDS as readonly string[]).includes(kind) || !name) return refused(request, reply, 400, `The form must name a kind (${PAUSE_KINDS.join(", ")}) and a name.`, back);
    if (reason.length > PAUSE_REASON_MAX_CHARS) return refused(request, reply, 400, `The reason must be at most ${PAUSE_REASON_MAX_CHARS} characters.`, back);
    const operator = operatorOf(request);
    const target = `${WHAT[kind as PauseKind]} ${name}`;
    try {
      if (action === "pause") {
        const { created, pause: held } = await pause(deps.db, deps.registry, kind as PauseKind, name, operator.id, reason);
        request.log.info({ operator: operator.id, kind, name, changed: created }, "paused by operator (dashboard)");
        setFlash(request, reply, { kind: "ok", text: created ? `Paused ${target}: no new attempt starts; waiting jobs stay queued.` : `${describePause(held)}; nothing changed.` });
      } else {
        const ended = await resume(deps.db, deps.registry, kind as PauseKind, name, operator.id, reason);
        request.log.info({ operator: operator.id, kind, name, changed: ended !== null }, "resumed by operator (dashboard)");
        setFlash(request, reply, { kind: "ok", text: ended ? `Resumed ${target}: its waiting jobs start now.` : `${target} was not paused; nothing changed.` });
      }
    } catch (error) {
      if (error instanceof UnknownPauseTargetError) return refused(request, reply, 404, `${error.message}.`, back);
      throw error;
    }
    return reply.redirect(back, 303);
  };

  return { "POST /pauses/:action": act };
}

function refused(request: FastifyRequest, reply: FastifyReply, statusCode: number, message: string, back: string) {
  return sendPage(request, reply, { title: "Pause", section: back.startsWith("/dashboard/tasks") ? "tasks" : "queues", body: html`<p>${message} <a href="${back}">Back</a></p>` }, statusCode);
}
