/**
 * The dashboard end to end, in headless Chromium (Debian's `chromium`, driven by playwright-core)
 * against the real service process: sign in, run a job from the "run now" form and watch it
 * succeed without reloading (and what it resolved to: its result), read its history, retry a dead job until it succeeds, and see a forged
 * action refused. Screenshots of every page land in artifacts/screenshots/.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import axeCore from "axe-core";
import { sql } from "kysely";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { describe, expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { API_TOKEN, SESSION_SECRET } from "../helpers/app.ts";
import { IN_CI, insertTaxa, resetData, test, testEnvironment, waitFor } from "../helpers/env.ts";
import { PROJECT_ROOT, startChild, type ChildService } from "../helpers/service-process.ts";

const SCREENSHOTS = path.join(PROJECT_ROOT, "artifacts/screenshots");

/** Debian's chromium (what .ci/run installs), or any `chromium` on PATH. */
function findChromium(): string | null {
  if (existsSync("/usr/bin/chromium")) return "/usr/bin/chromium";
  try {
    return execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

const executablePath = findChromium();
if (!executablePath) {
  console.warn("browser tests skipped: no chromium found. Install it (apt-get install -y chromium; .ci/run does) to run them.");
}

async function launch(userDataDir: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: executablePath!,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 860 },
  });
}

/** axe-core's engine, injected into each page under test (through the DevTools protocol, which the page's CSP does not govern). */
const AXE_SOURCE = axeCore.source;
/** Impacts that fail the test: everything but "minor". */
const FAILING_IMPACTS = new Set(["moderate", "serious", "critical"]);

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: unknown[]; failureSummary?: string }>;
}

/**
 * Runs axe-core (WCAG 2.2 A and AA, and its best practices, which hold landmark-unique) on the page
 * as it is now, and returns its moderate, serious and critical violations, one line each.
 */
async function accessibilityViolations(page: Page, state: string): Promise<string[]> {
  if (!(await page.evaluate(() => "axe" in globalThis))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(context: unknown, options: unknown): Promise<{ violations: AxeViolation[] }> } }).axe;
    const result = await axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
      // Only violations are read: skipping the passes' details halves the run.
      resultTypes: ["violations"],
    });
    return result.violations.map((violation) => ({ ...violation, nodes: violation.nodes.map((node) => ({ target: node.target, failureSummary: node.failureSummary })) }));
  });
  return violations
    .filter((violation) => FAILING_IMPACTS.has(violation.impact ?? ""))
    .map((violation) => `${state}: ${violation.id} (${violation.impact}) ${violation.help}: ${violation.nodes.map((node) => JSON.stringify(node.target)).join(", ")}`);
}

/** Every page state the test passes through: a screenshot, and axe's findings collected. */
const accessibility: string[] = [];

async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
  accessibility.push(...(await accessibilityViolations(page, name)));
}

/** The id of the job whose page is open. */
function jobIdOf(page: Page): string {
  return /\/dashboard\/jobs\/(\d+)/.exec(page.url())![1]!;
}

// CI installs chromium, so there a missing browser fails the test instead of skipping it.
describe.skipIf(!executablePath && !IN_CI)("the dashboard in a browser", () => {
  test("sign in, run a job and watch it succeed, read its history, retry a dead job, and be refused a forged action", { timeout: 420_000 }, async ({ env }) => {
    await resetData(env);
    await mkdir(SCREENSHOTS, { recursive: true });
    const service: ChildService = startChild(
      ["src/main.ts"],
      testEnvironment({
        DATABASE_URL: env.database.url,
        GBIF_BASE_URL: env.gbif.url,
        API_TOKENS: API_TOKEN,
        DASHBOARD_SESSION_SECRET: SESSION_SECRET,
        WORKER_POLL_INTERVAL_MS: "500",
        LOG_LEVEL: "info",
      }),
    );
    const userDataDir = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-chromium-"));
    let context: BrowserContext | undefined;
    try {
      // Generous: on a loaded machine the child service takes a while to start.
      await service.waitForStatus("/readyz", 200, 90_000);
      context = await launch(userDataDir);
      const page = context.pages()[0] ?? (await context.newPage());
      const problems: string[] = [];
      page.on("console", (message) => {
        // Refused sign-ins, invalid forms and forged actions answer 4xx on purpose; anything else
        // logged as an error (a CSP violation, a script failure) is a problem.
        if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
      });
      page.on("pageerror", (error) => problems.push(error.message));
      const base = service.baseUrl;

      // Signing in: the dashboard sends the browser to the login form and back.
      await page.goto(`${base}/dashboard/tasks`);
      await page.waitForURL(/\/dashboard\/login\?next=/);
      await shoot(page, "login");
      await page.getByLabel("Bearer token").fill("not-the-token-0123456789");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByText("Sign-in refused: invalid credential.").waitFor();
      await shoot(page, "login-refused");
      await page.getByLabel("Bearer token").fill(API_TOKEN);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL(`${base}/dashboard/tasks`);
      await page.getByRole("heading", { level: 1, name: "Tasks & schedules" }).waitFor();
      expect(await page.getByText("At 03:30 (UTC)").count()).toBe(1);
      await shoot(page, "tasks");

      // Run now: resolve_taxa for one name, from the form generated from its schema.
      const [pumaId, felisId] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }, { scientific_name: "Felis concolor" }]);
      await page.goto(`${base}/dashboard/tasks/resolve_taxa`);
      await shoot(page, "task");
      await page.getByLabel("limit").fill("abc");
      await page.getByRole("button", { name: "Enqueue resolve_taxa" }).click();
      await page.getByText("payload/limit must be integer").first().waitFor();
      await shoot(page, "run-now-errors");
      await page.getByLabel("limit").fill("");
      await page.getByLabel("taxonIds").fill(String(pumaId));
      await page.getByRole("button", { name: "Enqueue resolve_taxa" }).click();
      await page.getByText("Job enqueued.").waitFor();
      const runId = jobIdOf(page);
      // The live refresh, not a reload, brings the new state.
      const loads: string[] = [];
      page.on("load", () => loads.push(page.url()));
      await page.locator('[data-job-state="succeeded"]').waitFor({ timeout: 30_000 });
      expect(loads).toEqual([]);
      await page.locator('[data-live-fragment="timeline"] [data-event="succeeded"]').waitFor();
      // What the taxon resolved to: the job's result, brought by the same live refresh, pretty-printed.
      const result = page.locator('[data-live-fragment="result"] pre.json');
      await result.waitFor();
      const shown = JSON.parse((await result.textContent())!) as { taxa: unknown[] };
      expect(shown.taxa).toEqual([{ id: pumaId, status: "resolved", usageKey: "2435099", acceptedName: "Puma concolor", matchType: "EXACT" }]);
      expect(await result.textContent()).toContain('\n  "requested": 1,');
      expect(loads).toEqual([]);
      await shoot(page, "job-succeeded");

      // Its history, opened from the job list.
      await page.goto(`${base}/dashboard/jobs?task=resolve_taxa`);
      await shoot(page, "jobs");
      await page.getByRole("link", { name: runId, exact: true }).click();
      await page.waitForURL(`${base}/dashboard/jobs/${runId}`);
      const history = page.locator('[data-live-fragment="timeline"] tbody tr');
      expect(await history.locator(".event").allTextContents()).toEqual(["enqueued", "started", "succeeded"]);
      expect(await history.first().textContent()).toMatch(/token:[0-9a-f]{8}\s+via http/);

      // A dead job: GBIF fails the only attempt.
      env.gbif.script("Felis concolor", { status: 503, body: {} });
      await page.goto(`${base}/dashboard/tasks/resolve_taxa`);
      await page.getByLabel("taxonIds").fill(String(felisId));
      await page.getByLabel("Max attempts").fill("1");
      await page.getByRole("button", { name: "Enqueue resolve_taxa" }).click();
      await page.getByText("Job enqueued.").waitFor();
      const deadId = jobIdOf(page);
      await page.locator('[data-job-state="dead"]').waitFor({ timeout: 30_000 });
      await page.locator("details.stack").first().waitFor();
      await shoot(page, "job-dead");
      await page.goto(`${base}/dashboard/dead-letter`);
      await page.getByText("1 dead job in 1 group.").waitFor();
      await shoot(page, "dead-letter");

      // Retry it from its page, once GBIF answers again, and see it succeed.
      env.gbif.reset();
      await page.goto(`${base}/dashboard/jobs/${deadId}`);
      await page.getByText("Retry…").click();
      await page.getByRole("button", { name: "Yes, retry it" }).click();
      await page.getByText("Job retried: it is back in the queue.").waitFor();
      await page.locator('[data-job-state="succeeded"]').waitFor({ timeout: 30_000 });
      await page.locator('[data-live-fragment="timeline"] [data-event="retried"]').waitFor();
      await waitFor(async () => (await env.db.selectFrom("taxa").select("status").where("id", "=", felisId!).executeTakeFirstOrThrow()).status === "resolved", {
        message: "the retried job to resolve the taxon",
      });

      // Forged actions: a script without the token, and a form whose token was tampered with.
      const later = await enqueueJob(env.db, env.registry, "resolve_taxa", {}, { runAt: new Date(Date.now() + 3_600_000) }, { source: "app" });
      await page.goto(`${base}/dashboard/jobs/${later.id}`);
      const status = await page.evaluate(async (url) => (await fetch(url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "" })).status, `/dashboard/jobs/${later.id}/cancel`);
      expect(status).toBe(403);
      await page.getByText("Cancel…").click();
      await page.locator('input[name="_csrf"]').last().evaluate((input) => {
        (input as unknown as { value: string }).value = "tampered";
      });
      await page.getByRole("button", { name: "Yes, cancel it" }).click();
      await page.getByText("Refused: the form's security token is missing or out of date.").waitFor();
      await shoot(page, "csrf-refused");
      const record = await env.db.selectFrom("observing_jobs.job_records").select("phase").where("id", "=", later.id).executeTakeFirstOrThrow();
      expect(record.phase).toBe("waiting");

      // The remaining pages, on a laptop and on a phone.
      await page.goto(`${base}/dashboard/queues`);
      await shoot(page, "queues");

      // Pause the GBIF cap group from a task's page, behind its confirmation, then resume it from the queues page.
      await page.goto(`${base}/dashboard/tasks/resolve_taxa`);
      await page.getByText("Pause cap group gbif…").click();
      await page.locator("details[open]").getByLabel("Reason").fill("GBIF answers 503");
      await shoot(page, "pause-confirm");
      await page.getByRole("button", { name: "Yes, pause it" }).click();
      await page.getByText("Paused cap group gbif: no new attempt starts; waiting jobs stay queued.").waitFor();
      await page.goto(`${base}/dashboard/queues`);
      await page.getByText("Resume cap group gbif…").click();
      await shoot(page, "queues-paused");
      await page.getByRole("button", { name: "Yes, resume it" }).click();
      await page.getByText("Resumed cap group gbif: its waiting jobs start now.").waitFor();
      expect((await sql`select action, reason from observing_jobs.pause_events order by id`.execute(env.db)).rows).toEqual([
        { action: "paused", reason: "GBIF answers 503" },
        { action: "resumed", reason: null },
      ]);
      await page.goto(`${base}/dashboard`);
      await page.locator('[data-count="succeeded"]').waitFor();
      expect(await page.locator('[data-count="succeeded"]').textContent()).toBe("2");
      await shoot(page, "overview");
      // At 1280 px the worker pools table shows whole, without a scroll bar.
      const pools = page.locator('[data-live-fragment="pools"] .table-wrap');
      await pools.waitFor();
      expect(await pools.evaluate((element) => element.scrollWidth - element.clientWidth)).toBeLessThanOrEqual(0);
      await page.emulateMedia({ colorScheme: "dark" });
      await shoot(page, "overview-dark");
      await page.emulateMedia({ colorScheme: "light" });
      await page.goto(`${base}/dashboard/jobs/999999999`);
      await shoot(page, "not-found");
      await page.goto(`${base}/dashboard`);
      await page.setViewportSize({ width: 390, height: 844 });
      await shoot(page, "overview-phone");
      await page.goto(`${base}/dashboard/jobs/${deadId}`);
      await shoot(page, "job-phone");

      // The pages ran without script errors or Content-Security-Policy violations.
      expect(problems).toEqual([]);
      // axe-core found nothing moderate, serious or critical on any of them.
      expect(accessibility).toEqual([]);
    } finally {
      await context?.close();
      await rm(userDataDir, { recursive: true, force: true });
      service.kill();
      expect(await service.exited).toBe(0);
    }
  });
});
