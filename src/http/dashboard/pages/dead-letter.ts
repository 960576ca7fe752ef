/** Dead-letter: dead jobs grouped by task and error, with bulk retry and discard per group. */
import type { FastifyInstance } from "fastify";
import { actOnDeadLetterGroup, BULK_ACTION_LIMIT, DEAD_LETTER_SCAN_LIMIT, findDeadLetterGroups } from "../../../dashboard/dead-letter.ts";
import { operatorOf, sendPage, type DashboardContext } from "../context.ts";
import { html } from "../html.ts";
import { queryString, timeCell, type Notice } from "../layout.ts";
import { confirmForm, firstValue } from "./jobs.ts";

export function registerDeadLetter(app: FastifyInstance, { deps }: DashboardContext): void {
  app.get("/dead-letter", async (request, reply) => {
    const operator = operatorOf(request);
    const now = new Date();
    const { groups, scanned, capped } = await findDeadLetterGroups(deps.db);
    const query = request.query as Record<string, string | string[] | undefined>;
    const outcome = describeOutcome(query);
    const body =
      groups.length === 0
        ? html`<p class="ok-text">The dead-letter is empty.</p>`
        : html`<p>${scanned} dead job${scanned === 1 ? "" : "s"} in ${groups.length} group${groups.length === 1 ? "" : "s"}${
            capped ? html` <strong>(grouping the newest ${DEAD_LETTER_SCAN_LIMIT} only)</strong>` : ""
          }. Actions apply to up to ${BULK_ACTION_LIMIT} jobs of a group at a time.</p>
          <ul class="groups">${groups.map((group) => {
            const hidden = html`<input type="hidden" name="task" value="${group.task}"><input type="hidden" name="errorKey" value="${group.errorKey}">`;
            const what = html`${group.count} dead <strong>${group.task}</strong> job${group.count === 1 ? "" : "s"}`;
            return html`<li class="group">
              <h2 class="group-title"><span class="group-count">${group.count}</span> × ${group.task}</h2>
              <pre class="error-text">${group.error || "(no error recorded)"}</pre>
              <p class="muted">Newest: <a href="/dashboard/jobs/${group.newestJobId}">job ${group.newestJobId}</a>, died ${timeCell(group.newestFinishedAt, now)} ·
                <a href="/dashboard/jobs${queryString({ task: group.task, state: "dead" })}">list them</a></p>
              <div class="job-actions">
                ${confirmForm("/dashboard/dead-letter/retry", operator, `Retry all ${group.count}…`, html`Retry ${what}? They go back to the queue now with their attempts reset.`, "Yes, retry them", false, hidden)}
                ${confirmForm("/dashboard/dead-letter/discard", operator, `Discard all ${group.count}…`, html`Discard ${what}? They leave the dead-letter for good.`, "Yes, discard them", true, hidden)}
              </div>
            </li>`;
          })}</ul>`;
    return sendPage(request, reply, { title: "Dead-letter", section: "dead-letter", notice: outcome, body });
  });

  app.post("/dead-letter/:action", async (request, reply) => {
    const { action } = request.params as { action: string };
    if (action !== "retry" && action !== "discard") return reply.callNotFound();
    const form = request.body instanceof URLSearchParams ? request.body : new URLSearchParams();
    const task = form.get("task");
    const errorKey = form.get("errorKey");
    if (!task || !errorKey || !/^[0-9a-f]{32}$/.test(errorKey)) {
      return sendPage(request, reply, { title: "Dead-letter", section: "dead-letter", body: html`<p>The form named no group. <a href="/dashboard/dead-letter">Back to the dead-letter</a></p>` }, 400);
    }
    const operator = operatorOf(request);
    const result = await actOnDeadLetterGroup(deps.db, { task, errorKey }, action, operator.id);
    request.log.info({ operator: operator.id, task, action, ...result }, `dead-letter bulk ${action} by operator (dashboard)`);
    const done = String(result.done);
    return reply.redirect(`/dashboard/dead-letter${queryString({ action, task, done, skipped: String(result.skipped), more: result.more ? "1" : undefined })}`, 303);
  });
}

function describeOutcome(query: Record<string, string | string[] | undefined>): Notice | null {
  const action = firstValue(query.action);
  const done = firstValue(query.done);
  if ((action !== "retry" && action !== "discard") || !done || !/^\d+$/.test(done)) return null;
  const skipped = Number(firstValue(query.skipped) ?? 0);
  const verb = action === "retry" ? "Retried" : "Discarded";
  const task = firstValue(query.task) ?? "";
  return {
    kind: "ok",
    text: `${verb} ${done} ${task} job${done === "1" ? "" : "s"}.${skipped > 0 ? ` ${skipped} had changed state and were left alone.` : ""}${
      firstValue(query.more) ? " More remain in the group: act again to continue." : ""
    }`,
  };
}
