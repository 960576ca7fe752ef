/**
 * deploy/monitoring/: the alerting and recording rules (`promtool check rules`, and the unit tests
 * in rules.test.yaml through `promtool test rules`), the Managed Service for Prometheus GlobalRules
 * manifest, and the Grafana dashboard, every query of which a real Prometheus (Debian's
 * `prometheus`) evaluates against a running service that it scrapes the way the collector sidecar
 * does: the sidecar's own scrape configuration, with METRICS_TOKEN.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parse, stringify } from "yaml";
import { describe, expect } from "vitest";
import { API_TOKEN } from "../helpers/app.ts";
import { IN_CI, resetData, test, testEnvironment, waitFor } from "../helpers/env.ts";
import { freePort, PROJECT_ROOT, startChild } from "../helpers/service-process.ts";

const MONITORING = path.join(PROJECT_ROOT, "deploy/monitoring");
const RULE_FILES = ["alerts.rules.yaml", "recording.rules.yaml"].map((file) => path.join(MONITORING, file));
const METRICS_TOKEN = "monitoring-test-metrics-token-0123";

/** Debian's `prometheus` package installs both (`.ci/run` installs it when missing). */
function onPath(binary: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${binary}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const promtool = onPath("promtool");
const prometheus = onPath("prometheus");
if (!promtool || !prometheus) {
  console.warn("monitoring tests skipped: promtool or prometheus not found. Install Debian's prometheus package (apt-get install -y prometheus; .ci/run does) to run them.");
}

interface RuleGroup {
  name: string;
  interval?: string;
  rules: Array<{ alert?: string; record?: string; expr: string; labels?: Record<string, string> }>;
}
const groupsOf = (file: string) => (parse(readFileSync(file, "utf8")) as { groups: RuleGroup[] }).groups;

interface Target {
  refId: string;
  expr: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
const dashboard = JSON.parse(readFileSync(path.join(MONITORING, "grafana-dashboard.json"), "utf8")) as {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query: string | { query: string } }> };
};
const queryPanels = dashboard.panels.filter((panel) => panel.type !== "row");

/** Grafana's macros and this dashboard's variables, as Grafana would fill them in. */
function asPromQL(expr: string): string {
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$__interval", "15s").replaceAll("$__range", "1h").replaceAll('"$task"', '".*"');
}

/** The service's metric names an expression reads (histogram series by their family name). */
function metricsIn(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\bobserving_jobs_[a-z0-9_]+/g)].map((match) => match[0].replace(/_(bucket|sum|count)$/, "")))];
}

describe("the rules", () => {
  test.skipIf(!promtool && !IN_CI)("pass promtool check rules", () => {
    const check = spawnSync("promtool", ["check", "rules", ...RULE_FILES], { encoding: "utf8" });
    expect(check.error, "promtool must be installed (Debian's prometheus package)").toBeUndefined();
    expect(check.stdout + check.stderr).toMatch(/SUCCESS: 6 rules found[\s\S]*SUCCESS: 11 rules found/);
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });

  test.skipIf(!promtool && !IN_CI)("pass their unit tests (promtool test rules deploy/monitoring/rules.test.yaml)", () => {
    const run = spawnSync("promtool", ["test", "rules", "rules.test.yaml"], { cwd: MONITORING, encoding: "utf8" });
    expect(run.error).toBeUndefined();
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/SUCCESS/);
  });

  test("alert on an overdue cron entry, growing lag, dead jobs, no live worker pool and rescues, each tested", () => {
    const alerts = groupsOf(RULE_FILES[0]!).flatMap((group) => group.rules);
    expect(alerts.map((rule) => rule.alert)).toEqual(
      expect.arrayContaining(["ObservingJobsCronOverdue", "ObservingJobsLagGrowing", "ObservingJobsDeadJobs", "ObservingJobsNoLiveWorkerPool", "ObservingJobsRescues"]),
    );
    for (const rule of alerts) {
      expect(rule.labels?.severity, rule.alert).toMatch(/^(warning|critical)$/);
      // Self-contained, so Cloud Monitoring's PromQL alerting (which evaluates no recording rules) can take them.
      expect(rule.expr, rule.alert).not.toMatch(/[a-z_]+:[a-z_]+:/);
    }
    const tests = parse(readFileSync(path.join(MONITORING, "rules.test.yaml"), "utf8")) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string }> }> };
    const tested = new Set(tests.tests.flatMap((unit) => unit.alert_rule_test ?? []).map((alertTest) => alertTest.alertname));
    for (const rule of alerts) expect(tested.has(rule.alert!), `${rule.alert} has a promtool unit test`).toBe(true);
  });

  test("aggregate the shared-database gauges with max and the per-instance counters with sum", () => {
    const rules = [...groupsOf(RULE_FILES[0]!), ...groupsOf(RULE_FILES[1]!)].flatMap((group) => group.rules);
    for (const rule of rules) {
      for (const gauge of ["queue_jobs", "queue_oldest_ready_age_seconds", "cron_overdue", "cron_last_success_timestamp_seconds", "worker_pools"]) {
        if (new RegExp(`observing_jobs_${gauge}\\b`).test(rule.expr)) expect(rule.expr, rule.alert ?? rule.record).toMatch(/^\(?max\b/);
      }
      if (/_total\b/.test(rule.expr)) expect(rule.expr, rule.alert ?? rule.record).toMatch(/^sum\b/);
    }
  });

  test("global-rules.yaml is a GlobalRules resource with exactly the groups of the two rule files", () => {
    const manifest = parse(readFileSync(path.join(MONITORING, "global-rules.yaml"), "utf8"));
    expect(manifest).toMatchObject({ apiVersion: "monitoring.googleapis.com/v1", kind: "GlobalRules", metadata: { name: "observing-jobs" } });
    expect(manifest.spec.groups).toEqual(RULE_FILES.flatMap(groupsOf));
  });
});

describe("the Grafana dashboard", () => {
  test("is an importable dashboard whose every panel queries the chosen Prometheus data source", () => {
    expect(dashboard).toMatchObject({ uid: "observing-jobs", title: "observing-jobs" });
    expect(dashboard.templating.list.find((variable) => variable.name === "datasource")).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(new Set(dashboard.panels.map((panel) => panel.id)).size).toBe(dashboard.panels.length);
    expect(queryPanels.length).toBeGreaterThan(10);
    for (const panel of queryPanels) {
      expect(panel.datasource, panel.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets!) expect(metricsIn(target.expr).length + (/\bup\{/.test(target.expr) ? 1 : 0), panel.title).toBeGreaterThan(0);
    }
  });

  test.skipIf(!prometheus && !IN_CI)(
    "every query evaluates without error in a real Prometheus scraping a running service",
    { timeout: 150_000 },
    async ({ env }) => {
      await resetData(env);
      const service = startChild(
        ["src/main.ts"],
        testEnvironment({
          DATABASE_URL: env.database.url,
          GBIF_BASE_URL: env.gbif.url,
          API_TOKENS: API_TOKEN,
          METRICS_TOKEN,
          WORKER_POLL_INTERVAL_MS: "200",
          // The start-up line (info) says where the service listens.
          LOG_LEVEL: "info",
        }),
      );
      const directory = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-prometheus-"));
      let server: ChildProcess | undefined;
      let serverOutput = "";
      try {
        await service.waitForStatus("/ready", 200);
        // A job that succeeds (nothing to resolve) and one that dies (sync_conservation_status
        // without IUCN_API_TOKEN fails at once; one attempt allowed), so the counters have series.
        const headers = { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" };
        for (const url of ["/jobs/resolve_taxa", "/jobs/sync_conservation_status?maxAttempts=1"]) {
          expect((await fetch(`${service.baseUrl}${url}`, { method: "POST", headers, body: "{}" })).status, url).toBe(202);
        }

        // The collector sidecar's own scrape configuration, pointed at this service and this token.
        const collector = parse(readFileSync(path.join(PROJECT_ROOT, "deploy/otel-collector.yaml"), "utf8"));
        const scrape = collector.receivers.prometheus.config.scrape_configs[0];
        const tokenFile = path.join(directory, "metrics-token");
        await writeFile(tokenFile, METRICS_TOKEN);
        // The rule files as shipped, evaluated every second here instead of at their own interval.
        const ruleFiles = await Promise.all(
          RULE_FILES.map(async (file) => {
            const copy = path.join(directory, path.basename(file));
            await writeFile(copy, stringify({ groups: groupsOf(file).map(({ interval: _interval, ...group }) => group) }));
            return copy;
          }),
        );
        const configFile = path.join(directory, "prometheus.yml");
        await writeFile(
          configFile,
          stringify({
            global: { scrape_interval: "1s", evaluation_interval: "1s" },
            rule_files: ruleFiles,
            scrape_configs: [
              {
                ...scrape,
                scrape_interval: "1s",
                scrape_timeout: "1s",
                authorization: { ...scrape.authorization, credentials_file: tokenFile },
                static_configs: [{ targets: [new URL(service.baseUrl).host] }],
              },
            ],
          }),
        );
        const port = await freePort();
        const api = `http://127.0.0.1:${port}`;
        server = spawn(
          "prometheus",
          [`--config.file=${configFile}`, `--storage.tsdb.path=${path.join(directory, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"],
          { stdio: ["ignore", "pipe", "pipe"] },
        );
        server.stdout!.on("data", (chunk: Buffer) => (serverOutput += chunk.toString()));
        server.stderr!.on("data", (chunk: Buffer) => (serverOutput += chunk.toString()));
        const query = async (promql: string) => {
          const response = await fetch(`${api}/api/v1/query?${new URLSearchParams({ query: promql })}`);
          return (await response.json()) as { status: string; error?: string; data?: { result: unknown[] } };
        };

        await waitFor(async () => (await fetch(`${api}/-/ready`).catch(() => null))?.status === 200, { timeoutMs: 30_000, message: `Prometheus ready\n${serverOutput}` });
        // Scraped with the token, and the jobs' outcomes in the scraped series, over enough scrapes for rate().
        await waitFor(
          async () => {
            const scraped = await query('count_over_time(observing_jobs_jobs_succeeded_total{job="observing-jobs"}[1m]) >= 5');
            const died = await query('observing_jobs_jobs_exhausted_total{task="sync_conservation_status"}');
            return (scraped.data?.result.length ?? 0) > 0 && (died.data?.result.length ?? 0) > 0;
          },
          { timeoutMs: 60_000, message: `Prometheus to scrape both jobs' outcomes\n${serverOutput}` },
        );
        const up = await query('up{job="observing-jobs"}');
        expect(up.data?.result).toEqual([expect.objectContaining({ value: [expect.any(Number), "1"] })]);

        const exposed = new Set(
          [...(await (await fetch(`${service.baseUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text()).matchAll(/^# TYPE (\S+)/gm)].map(
            (match) => match[1]!,
          ),
        );
        for (const panel of queryPanels) {
          for (const target of panel.targets!) {
            const label = `${panel.title} (${target.refId}): ${target.expr}`;
            for (const metric of metricsIn(target.expr)) expect(exposed.has(metric), `${label} reads ${metric}, which /metrics does not have`).toBe(true);
            const answer = await query(asPromQL(target.expr));
            expect(answer.error, label).toBeUndefined();
            expect(answer.status, label).toBe("success");
            // The one panel that stays empty here: no crontab entry has run in this test.
            if (!target.expr.includes("cron_last_success_timestamp_seconds")) expect(answer.data!.result.length, `${label} returned nothing`).toBeGreaterThan(0);
          }
        }
        // The variable's label_values(...) query: Grafana asks the label values API.
        const variable = dashboard.templating.list.find((candidate) => candidate.name === "task")!;
        const match = /^label_values\((.+), (\w+)\)$/.exec((variable.query as { query: string }).query)!;
        const values = (await (await fetch(`${api}/api/v1/label/${match[2]}/values?${new URLSearchParams({ "match[]": match[1]! })}`)).json()) as { data: string[] };
        expect(values.data).toEqual(expect.arrayContaining(["resolve_taxa", "sync_conservation_status"]));

        // The rules, loaded into the same Prometheus, evaluate against the real series without error.
        const rules = async () => {
          const answer = (await (await fetch(`${api}/api/v1/rules`)).json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> } };
          return answer.data.groups.flatMap((group) => group.rules);
        };
        const evaluated = await waitFor(
          async () => {
            const current = await rules();
            return current.every((rule) => rule.health !== "unknown") ? current : undefined;
          },
          { timeoutMs: 15_000, message: "every rule evaluated once" },
        );
        expect(evaluated).toHaveLength(17);
        for (const rule of evaluated) expect([rule.health, rule.lastError ?? ""], rule.name).toEqual(["ok", ""]);
        // The dead sync_conservation_status job is in the dead-letter: its alert is pending or firing.
        const alerts = (await (await fetch(`${api}/api/v1/alerts`)).json()) as { data: { alerts: Array<{ labels: Record<string, string> }> } };
        expect(alerts.data.alerts.map((alert) => alert.labels)).toContainEqual(expect.objectContaining({ alertname: "ObservingJobsDeadJobs", task: "sync_conservation_status" }));
      } finally {
        if (server && server.exitCode === null) {
          const exited = new Promise((resolve) => server!.once("exit", resolve));
          server.kill("SIGTERM");
          await exited;
        }
        service.kill();
        await service.exited;
        await rm(directory, { recursive: true, force: true });
      }
    },
  );
});
