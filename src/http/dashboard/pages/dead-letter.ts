/** Dead-letter: dead jobs grouped by task and error, with bulk retry and discard per group. */
import { actOnDeadLetterGroup, BULK_ACTION_LIMIT, DEAD_LETTER_SCAN_LIMIT, findDeadLetterGroups } from "../queries/dead-letter.ts";
import { operatorOf, sendPage, type DashboardContext, type PageHandler } from "../context.ts";
import { html } from "../html.ts";
import { queryString, timeCell, type Notice } from "../layout.ts";
import { setFlash } from "../flash.ts";
import { confirmForm } from "./jobs.ts";

export function deadLetterRoutes({ deps }: DashboardContext) {
  const listPage: PageHandler = async (request, reply) => {
    const operator = operatorOf(request);
    const now = new Date();
    const { groups, scanned, capped } = await findDeadLetterGroups(deps.db);
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
    return sendPage(request, reply, { title: "Dead-letter", section: "dead-letter", body });
  };

  const act: PageHandler = async (request, reply) => {
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
    setFlash(request, reply, describeOutcome(action, deps.registry.find(task)?.name ?? null, result));
    return reply.redirect("/dashboard/dead-letter", 303);
  };

  return { "GET /dead-letter": listPage, "POST /dead-letter/:action": act };
}

/** What the bulk action did, in the server's words (shown through a signed flash, never from the URL). */
function describeOutcome(action: "retry" | "discard", task: string | null, result: { done: number; skipped: number; more: boolean }): Notice {
  const verb = action === "retry" ? "Retried" : "Discarded";
  const { done, skipped } = result;
  return {
    kind: "ok",
    text: `${verb} ${done} ${task ? `${task} ` : ""}job${done === 1 ? "" : "s"}.${skipped > 0 ? ` ${skipped} had changed state and were left alone.` : ""}${
      result.more ? " More remain in the group: act again to continue." : ""
    }`,
  };
}
