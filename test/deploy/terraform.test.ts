/**
 * There is no terraform binary here (Debian does not package it) and the Google provider cannot be
 * downloaded, so `terraform validate` cannot run: this parses every .tf file with HashiCorp's HCL
 * parser (@cdktf/hcl2json, WebAssembly, offline) and checks the structure the deployment depends on.
 */
import { buildTestApp } from "../helpers/app.ts";
import { existsSync, readFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "@cdktf/hcl2json";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parseTracingSettings, tracingEnabled } from "../../src/observability/tracing-settings.ts";
import type { App } from "../../src/http/app.ts";
import { makeTestEnv } from "../helpers/env.ts";
import { MIGRATE_COMMAND } from "../helpers/image.ts";

// hcl2json's output is untyped JSON; the assertions below are what give it a shape.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Hcl = any;

const directory = path.resolve(import.meta.dirname, "../../terraform");
const files = (await readdir(directory)).filter((file) => file.endsWith(".tf")).sort();
const documents: Array<{ file: string; hcl: Hcl }> = await Promise.all(
  files.map(async (file) => ({ file, hcl: await parse(file, await readFile(path.join(directory, file), "utf8")) })),
);

/** Every block of one top-level kind across all files (e.g. "variable" → name → body). */
function blocks(kind: string): Record<string, Hcl> {
  const all: Record<string, Hcl> = {};
  for (const { hcl } of documents) {
    for (const [name, bodies] of Object.entries(hcl[kind] ?? {})) all[name] = (bodies as Hcl[])[0];
  }
  return all;
}

function resources(type: string): Record<string, Hcl> {
  const all: Record<string, Hcl> = {};
  for (const { hcl } of documents) {
    for (const [name, bodies] of Object.entries(hcl.resource?.[type] ?? {})) all[name] = (bodies as Hcl[])[0];
  }
  return all;
}

const locals: Record<string, Hcl> = Object.assign({}, ...documents.flatMap(({ hcl }) => hcl.locals ?? []));
const variables = blocks("variable");
const service = resources("google_cloud_run_v2_service").service;
const containers: Hcl[] = service.template[0].containers;
const serviceContainer = containers.find((container) => container.name === "service");
const collectorContainer = containers.find((container) => container.name !== "service");
const migrateJob = resources("google_cloud_run_v2_job").migrate;
const migrateContainer = migrateJob.template[0].template[0].containers[0];

/** An expression with `${local.otel_collector.*}` and `${var.*}` (their defaults) filled in. */
function resolve(expression: string): string {
  return expression
    .replace(/\$\{local\.otel_collector\.(\w+)\}/g, (_, key: string) => String(locals.otel_collector[key]))
    .replace(/\$\{var\.(\w+)\}/g, (_, name: string) => String(variables[name].default));
}

/** Every string anywhere in a parsed value. */
function strings(value: Hcl): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(strings);
  if (value && typeof value === "object") return Object.values(value).flatMap(strings);
  return [];
}

/** The regex("...") literals of an HCL expression, as JavaScript RegExps (RE2 and JS agree on these). */
function regexesIn(expression: string): RegExp[] {
  const literals = [...expression.matchAll(/regex\(("(?:\\.|[^"\\])*")/g)].map((match) => match[1]!);
  if (literals.length === 0) throw new Error(`no regex() in ${expression}`);
  return literals.map((literal) => new RegExp(JSON.parse(literal) as string));
}
const regexIn = (expression: string) => regexesIn(expression)[0]!;

const envNames = (container: Hcl) => [
  ...(container.env ?? []).map((env: Hcl) => env.name),
  ...(container.dynamic?.env ?? []).map((env: Hcl) => env.for_each),
];

describe("terraform/", () => {
  test("parses, and pins Terraform and the Google provider", () => {
    expect(files).toEqual(expect.arrayContaining(["versions.tf", "variables.tf", "service.tf", "migrate.tf", "iam.tf", "outputs.tf"]));
    const terraform = documents.find(({ file }) => file === "versions.tf")!.hcl.terraform[0];
    expect(terraform.required_version).toMatch(/>= ?1\.(7|8|9|1\d)/);
    // 7.x is the provider's current major.
    expect(terraform.required_providers[0].google).toMatchObject({ source: "hashicorp/google", version: expect.stringMatching(/^~> ?7\.\d+/) });
  });

  test("grants nothing to the public: no allUsers or allAuthenticatedUsers anywhere", () => {
    for (const { file, hcl } of documents) {
      expect(strings(hcl).filter((value) => /allUsers|allAuthenticatedUsers/.test(value)), file).toEqual([]);
    }
  });

  test("roles/run.invoker goes to the invokers variable only, and that variable refuses public principals", () => {
    const bindings = Object.values(resources("google_cloud_run_v2_service_iam_member"));
    expect(bindings).toHaveLength(1);
    expect(bindings[0]).toMatchObject({ for_each: "${toset(var.invokers)}", member: "${each.value}", role: "roles/run.invoker" });
    for (const type of ["google_cloud_run_v2_service_iam_binding", "google_cloud_run_v2_service_iam_policy"]) {
      expect(resources(type), type).toEqual({});
    }

    const invokerRule = regexIn(variables.invokers.validation[0].condition);
    expect(invokerRule.test("serviceAccount:observing-web@app-prod.iam.gserviceaccount.com")).toBe(true);
    expect(invokerRule.test("user:ops@observing.example")).toBe(true);
    for (const member of ["allUsers", "allAuthenticatedUsers", "group:everyone@observing.example", "domain:observing.example"]) {
      expect(invokerRule.test(member), member).toBe(false);
    }
  });

  test("the same invokers feed the service's caller allowlist", () => {
    expect(locals.allowed_callers).toMatch(/var\.invokers/);
    const allowlist = serviceContainer.env.find((env: Hcl) => env.name === "AUTH_ALLOWED_CALLERS");
    expect(allowlist?.value).toMatch(/local\.allowed_callers/);
  });

  test("checks callers' ID tokens for the audience Cloud Run accepts (the service refuses to start without it in production)", () => {
    expect(service.custom_audiences).toEqual(["${var.oidc_audience}"]);
    const audience = serviceContainer.env.find((env: Hcl) => env.name === "AUTH_OIDC_AUDIENCE");
    expect(audience?.value).toBe("${var.oidc_audience}");
  });

  test("keeps at least one instance with CPU always allocated, and bounds the instance count", () => {
    expect(service.template[0].scaling[0]).toEqual({ min_instance_count: "${var.min_instances}", max_instance_count: "${var.max_instances}" });
    expect(variables.min_instances.default).toBeGreaterThanOrEqual(1);
    expect(variables.min_instances.validation[0].condition).toMatch(/var\.min_instances >= 1/);
    expect(serviceContainer.resources[0].cpu_idle).toBe(false);
  });

  test("reaches Cloud SQL through the mounted connector socket, on service and migrate job alike", () => {
    for (const [name, template, container] of [
      ["service", service.template[0], serviceContainer],
      ["migrate", migrateJob.template[0].template[0], migrateContainer],
    ] as const) {
      expect(template.volumes[0], name).toMatchObject({ name: "cloudsql", cloud_sql_instance: [{ instances: ["${var.cloud_sql_instance}"] }] });
      expect(container.volume_mounts[0], name).toEqual({ name: "cloudsql", mount_path: "/cloudsql" });
    }
  });

  test("secrets come from Secret Manager, never as plain values", () => {
    const secretEnv = serviceContainer.dynamic.env.find((env: Hcl) => env.for_each === "${local.service_secrets}");
    expect(secretEnv.content[0].value_source[0].secret_key_ref[0]).toEqual({ secret: "${env.value.id}", version: "${env.value.version}" });
    expect(locals.service_secrets).toMatch(/DATABASE_URL = var\.database_url_secret/);
    // Required in production: the dashboard's sessions are signed with it on every instance.
    expect(locals.service_secrets).toMatch(/DASHBOARD_SESSION_SECRET = var\.dashboard_session_secret/);
    expect(locals.optional_secrets).toEqual({ IUCN_API_TOKEN: "${var.iucn_api_token_secret}", API_TOKENS: "${var.api_tokens_secret}" });
    const plain = serviceContainer.env.map((env: Hcl) => env.name);
    for (const name of plain) expect(name).not.toMatch(/DATABASE_URL|TOKEN|SECRET|PASSWORD/);
    expect(locals.service_secrets).toMatch(/METRICS_TOKEN = var\.metrics_token_secret/);
    expect(migrateContainer.env[0]).toMatchObject({
      name: "DATABASE_URL",
      value_source: [{ secret_key_ref: [{ secret: "${var.migrate_database_url_secret.id}", version: "${var.migrate_database_url_secret.version}" }] }],
    });
    expect(envNames(serviceContainer)).toContain("${var.environment}");
  });

  test("every secret is read at a version pinned through its variable, never latest", () => {
    for (const { file, hcl } of documents) expect(strings(hcl.resource ?? {}).filter((value) => /\blatest\b/.test(value)), file).toEqual([]);
    const secretVariables = Object.entries(variables).filter(([name]) => name.endsWith("_secret"));
    expect(secretVariables.map(([name]) => name).sort()).toEqual(
      ["api_tokens_secret", "dashboard_session_secret", "database_url_secret", "iucn_api_token_secret", "metrics_token_secret", "migrate_database_url_secret"],
    );
    for (const [name, variable] of secretVariables) {
      expect(variable.type, name).toBe("${object({ id = string, version = string })}");
      const [idRule, versionRule] = regexesIn(variable.validation[0].condition);
      expect(idRule!.test("observing-jobs-database-url"), name).toBe(true);
      expect(versionRule!.test("3"), name).toBe(true);
      for (const version of ["latest", "0", "", "3 "]) expect(versionRule!.test(version), `${name} version ${JSON.stringify(version)}`).toBe(false);
    }
    // Secret volumes too: the collector's configuration at the version Terraform wrote, the token at its variable's.
    const items = service.template[0].volumes.flatMap((volume: Hcl) => volume.secret?.[0].items ?? []);
    expect(items.map((item: Hcl) => item.version).sort()).toEqual(
      ["${google_secret_manager_secret_version.otel_collector_config.version}", "${var.metrics_token_secret.version}"].sort(),
    );
  });

  test("the service account has exactly the least-privilege roles, and secret access per secret", () => {
    const roles = (local: string) => [...String(locals[local]).matchAll(/"(roles\/[\w.]+)"/g)].map((match) => match[1]).sort();
    expect(roles("service_roles")).toEqual(
      ["roles/cloudsql.client", "roles/cloudtrace.agent", "roles/logging.logWriter", "roles/monitoring.metricWriter"].sort(),
    );
    expect(roles("migrate_roles")).toEqual(["roles/cloudsql.client", "roles/logging.logWriter"]);

    const projectGrants = resources("google_project_iam_member");
    expect(projectGrants.service).toMatchObject({
      for_each: "${local.service_roles}",
      role: "${each.value}",
      member: "serviceAccount:${google_service_account.service.email}",
    });
    expect(projectGrants.migrate).toMatchObject({ for_each: "${local.migrate_roles}", member: "serviceAccount:${google_service_account.migrate.email}" });
    expect(Object.keys(projectGrants).sort()).toEqual(["migrate", "service"]);
    for (const type of ["google_project_iam_binding", "google_project_iam_policy"]) expect(resources(type), type).toEqual({});

    const secretGrants = resources("google_secret_manager_secret_iam_member");
    expect(secretGrants.service).toMatchObject({ for_each: "${local.service_secrets}", role: "roles/secretmanager.secretAccessor" });
    expect(secretGrants.service).toMatchObject({ secret_id: "${each.value.id}" });
    expect(secretGrants.migrate).toMatchObject({ for_each: "${toset([var.migrate_database_url_secret.id])}" });
    expect(secretGrants.otel_collector_config).toMatchObject({
      secret_id: "${google_secret_manager_secret.otel_collector_config.secret_id}",
      role: "roles/secretmanager.secretAccessor",
      member: "serviceAccount:${google_service_account.service.email}",
    });
    expect(service.template[0].service_account).toBe("${google_service_account.service.email}");
    expect(migrateJob.template[0].template[0].service_account).toBe("${google_service_account.migrate.email}");
  });

  test("the migrate job runs the service's image with the migrate command", () => {
    expect(migrateContainer.image).toBe(serviceContainer.image);
    expect(serviceContainer.image).toBe("${var.image}");
    expect([...migrateContainer.command, ...migrateContainer.args]).toEqual([...MIGRATE_COMMAND]);
    // The service runs the image's own CMD.
    expect(serviceContainer.command).toBeUndefined();
  });

  test("deletion protection is a variable on the service and the migrate job", () => {
    expect(service.deletion_protection).toBe("${var.deletion_protection}");
    expect(migrateJob.deletion_protection).toBe("${var.deletion_protection}");
    expect(variables.deletion_protection).toMatchObject({ type: "${bool}", default: true });
  });

  test("removes the old Cloud Scheduler job and Cloud Run Job of resolve_taxa", () => {
    const removed: Hcl[] = documents.flatMap(({ hcl }) => hcl.removed ?? []);
    const destroyed = removed.filter((block) => block.lifecycle?.[0]?.destroy === true).map((block) => block.from);
    expect(destroyed.sort()).toEqual(["${google_cloud_run_v2_job.resolve_taxa}", "${google_cloud_scheduler_job.resolve_taxa}"]);
  });

  test("every variable has a description and a type, and every non-boolean one a validation", () => {
    expect(Object.keys(variables).length).toBeGreaterThan(0);
    for (const [name, variable] of Object.entries(variables)) {
      expect(variable.description, name).toEqual(expect.stringMatching(/\S{3}/));
      expect(variable.type, name).toEqual(expect.stringMatching(/^\$\{/));
      if (variable.type !== "${bool}") expect(variable.validation?.length ?? 0, name).toBeGreaterThan(0);
    }
  });

  test("outputs the service URL and the service account", () => {
    const outputs = blocks("output");
    expect(outputs.service_url.value).toBe("${google_cloud_run_v2_service.service.uri}");
    expect(outputs.service_account_email.value).toBe("${google_service_account.service.email}");
    for (const [name, output] of Object.entries(outputs)) expect(output.description, name).toBeTruthy();
  });
});

describe("the OpenTelemetry Collector sidecar", () => {
  const collectorConfigPath = path.resolve(directory, "../deploy/otel-collector.yaml");
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const collectorConfig: any = parseYaml(String(readFileSync(collectorConfigPath)));
  const volume = (name: string) => service.template[0].volumes.find((candidate: Hcl) => candidate.name === name);
  const mount = (name: string) => resolve(collectorContainer.volume_mounts.find((candidate: Hcl) => candidate.name === name).mount_path);

  test("runs beside the service from the Google-Built OpenTelemetry Collector image, pinned by version", () => {
    expect(containers).toHaveLength(2);
    expect(resolve(collectorContainer.name)).toBe("otel-collector");
    expect(collectorContainer.image).toBe("${var.otel_collector_image}");
    expect(variables.otel_collector_image.default).toMatch(
      /^us-docker\.pkg\.dev\/cloud-ops-agents-artifacts\/google-cloud-opentelemetry-collector\/otelcol-google:\d+\.\d+\.\d+$/,
    );
    const rule = regexIn(variables.otel_collector_image.validation[0].condition);
    expect(rule.test(variables.otel_collector_image.default)).toBe(true);
    expect(rule.test(`${variables.otel_collector_image.default.split(":")[0]}@sha256:${"a".repeat(64)}`)).toBe(true);
    for (const unpinned of ["us-docker.pkg.dev/x/otelcol-google:latest", "us-docker.pkg.dev/x/otelcol-google"]) expect(rule.test(unpinned), unpinned).toBe(false);
    // The collector is up (its probes pass) before the service starts sending to it.
    expect(serviceContainer.depends_on.map(resolve)).toEqual(["otel-collector"]);
    // Only the service takes requests.
    expect(collectorContainer.ports).toBeUndefined();
    expect(serviceContainer.ports[0].container_port).toBe(8080);
  });

  test("reads deploy/otel-collector.yaml from Secret Manager, at the version Terraform stored", () => {
    const secretVersion = resources("google_secret_manager_secret_version").otel_collector_config;
    expect(secretVersion.secret_data).toBe('${file("${path.module}/../deploy/otel-collector.yaml")}');
    expect(existsSync(collectorConfigPath)).toBe(true);
    expect(secretVersion.deletion_policy).toBe("ABANDON");
    expect(volume("otel-collector-config").secret[0]).toEqual({
      secret: "${google_secret_manager_secret.otel_collector_config.secret_id}",
      items: [{ version: "${google_secret_manager_secret_version.otel_collector_config.version}", path: "config.yaml" }],
    });
    expect(collectorContainer.args.map(resolve)).toEqual([`--config=${mount("otel-collector-config")}/config.yaml`]);
  });

  test("is probed on the port of its health_check extension", () => {
    const port = Number(new URL(`http://${collectorConfig.extensions.health_check.endpoint}`).port);
    for (const probe of [collectorContainer.startup_probe[0], collectorContainer.liveness_probe[0]]) {
      expect(Number(resolve(probe.http_get[0].port))).toBe(port);
    }
  });

  test("scrapes the service's /metrics with METRICS_TOKEN, mounted from the same secret version the service checks", () => {
    const scrape = collectorConfig.receivers.prometheus.config.scrape_configs[0];
    expect(scrape.static_configs[0].targets).toEqual([`localhost:${serviceContainer.ports[0].container_port}`]);
    expect(scrape.metrics_path).toBe("/metrics");
    const token = volume("metrics-token").secret[0];
    expect(token).toEqual({ secret: "${var.metrics_token_secret.id}", items: [{ version: "${var.metrics_token_secret.version}", path: "token" }] });
    expect(scrape.authorization).toEqual({ type: "Bearer", credentials_file: `${mount("metrics-token")}/${token.items[0].path}` });
    expect(locals.service_secrets).toMatch(/METRICS_TOKEN = var\.metrics_token_secret/);
  });

  test("the service's OTEL_* settings send traces to the collector's OTLP receiver on localhost", () => {
    const otel = Object.fromEntries(Object.entries(locals.otel_environment as Record<string, string>).map(([name, value]) => [name, resolve(value)]));
    const wiring = serviceContainer.dynamic.env.find((env: Hcl) => env.for_each === "${local.otel_environment}");
    expect(wiring.content[0]).toEqual({ name: "${env.key}", value: "${env.value}" });
    expect(tracingEnabled(otel)).toBe(true);
    // Settings the service honours (it refuses gRPC, for one), so the revision starts.
    expect(parseTracingSettings(otel)).toMatchObject({ exporters: ["otlp"], protocol: "http/protobuf" });
    expect(otel).toMatchObject({ OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf", OTEL_SERVICE_NAME: "observing-jobs" });
    const endpoint = new URL(otel.OTEL_EXPORTER_OTLP_ENDPOINT!);
    expect(endpoint.hostname).toBe("localhost");
    expect(`${endpoint.hostname}:${endpoint.port}`).toBe(collectorConfig.receivers.otlp.protocols.http.endpoint);
    expect(collectorConfig.service.pipelines.traces.receivers).toContain("otlp");
    // Metrics are scraped and logs go to stdout: the SDK exports neither.
    expect(otel).toMatchObject({ OTEL_METRICS_EXPORTER: "none", OTEL_LOGS_EXPORTER: "none" });
    // The module sets these; var.environment may not set them a second time.
    const reserved = variables.environment.validation[1].condition as string;
    for (const name of [...Object.keys(otel), "METRICS_TOKEN", "GOOGLE_CLOUD_PROJECT"]) expect(reserved, name).toContain(`"${name}"`);
    expect(serviceContainer.env.find((env: Hcl) => env.name === "GOOGLE_CLOUD_PROJECT")?.value).toBe("${var.project_id}");
  });

  test("the service account may write what the collector exports: traces and metrics", () => {
    expect(String(locals.service_roles)).toMatch(/roles\/cloudtrace\.agent/);
    expect(String(locals.service_roles)).toMatch(/roles\/monitoring\.metricWriter/);
    expect(collectorConfig.service.pipelines.traces.exporters).toEqual(["googlecloud"]);
    expect(collectorConfig.service.pipelines.metrics.exporters).toEqual(["googlemanagedprometheus"]);
  });
});

describe("the probes point at routes the service serves", () => {
  let env: Awaited<ReturnType<typeof makeTestEnv>>;
  let app: App;
  beforeAll(async () => {
    env = await makeTestEnv();
    app = await buildTestApp(env);
  });
  afterAll(async () => {
    await app?.close();
    await env?.close();
  });

  test("startup on /ready, liveness on /health (paths that also work through the service URL), both answering 200", async () => {
    const startup = serviceContainer.startup_probe[0].http_get[0].path;
    const liveness = serviceContainer.liveness_probe[0].http_get[0].path;
    expect([startup, liveness]).toEqual(["/ready", "/health"]);
    for (const url of [startup, liveness]) {
      expect(app.hasRoute({ method: "GET", url }), url).toBe(true);
      expect((await app.inject({ method: "GET", url })).statusCode, url).toBe(200);
    }
  });
});
