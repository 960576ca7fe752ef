/**
 * The README's offline demo, run as written: `npm run demo`, the curl that triggers resolve_taxa,
 * the curl that shows it succeeded, the dashboard, and `npm run demo -- taxa` showing the rows
 * resolved. Only the host and port change (the demo here binds a port the kernel picks), and the
 * demo's database lives in a temporary directory.
 */
import { spawn } from "node:child_process";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { expect, it } from "vitest";
import { stopEmbeddedPostgresNow } from "../../src/db/embedded-postgres.ts";
import { testEnvironment, waitFor } from "../helpers/env.ts";
import { freePort, PROJECT_ROOT, startChild } from "../helpers/service-process.ts";

/** Runs a README snippet with these variables exported, and the Node running the tests first on PATH (for `npm run`). */
function bash(script: string, env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const exports = Object.entries({ ...env }).map(([name, value]) => `export ${name}=${JSON.stringify(value)}\n`).join("");
  const prelude = `set -euo pipefail\nexport PATH=${JSON.stringify(path.dirname(process.execPath))}:"$PATH"\n${exports}`;
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", prelude + script], { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("exit", (code) => resolve({ code, output }));
  });
}

it("the README's demo steps run offline and end with the taxa resolved", { timeout: 180_000 }, async () => {
  const readme = await readFile(path.join(PROJECT_ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Try it offline"), readme.indexOf("\n## ", readme.indexOf("## Try it offline") + 1));
  const [start, trigger, watch, rows] = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!.trim());
  expect(start).toBe("npm ci && npm run demo");
  const token = /^TOKEN=(\S+)$/m.exec(trigger!)![1]!;

  const dir = await mkdtemp(path.join(os.tmpdir(), "observing-jobs-demo-"));
  await chmod(dir, 0o755); // as root, PostgreSQL runs as `postgres` and must reach its data directory
  const database = { EMBEDDED_POSTGRES_DIR: path.join(dir, "pg"), EMBEDDED_POSTGRES_PORT: String(await freePort()) };
  // `npm run demo` is this entry point behind the Node version check (test/node-version.test.ts).
  const demo = startChild(["src/demo/main.ts"], testEnvironment({ ...database, LOG_LEVEL: "info" }), { ownProcessGroup: true });
  try {
    await demo.waitForStatus("/readyz", 200, 90_000);
    await waitFor(() => demo.output().includes("npm run demo -- taxa"), { message: "the demo's start-up banner" });
    expect(demo.output()).toContain(`token:      ${token}`);
    expect(demo.output()).toMatch(/added 6 example taxa/);
    const host = new URL(demo.baseUrl).host;
    const here = (script: string) => script.replaceAll("localhost:8080", host).replaceAll("curl -s ", "curl -sf ");

    const triggered = await bash(here(trigger!), {});
    expect(triggered.code, triggered.output).toBe(0);
    const { jobId } = JSON.parse(triggered.output) as { jobId: string };

    await waitFor(
      async () => {
        const watched = await bash(`TOKEN=${token}\n${here(watch!)}`, {});
        expect(watched.code, watched.output).toBe(0);
        const [job] = (JSON.parse(watched.output) as { jobs: Array<{ id: string; state: string }> }).jobs;
        expect(job!.id).toBe(jobId);
        return job!.state === "succeeded";
      },
      { timeoutMs: 30_000, message: "the resolve_taxa job to succeed" },
    );

    // The dashboard, signed in with the printed token, lists the job as succeeded.
    const login = await fetch(`${demo.baseUrl}/dashboard/login`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token, next: "/dashboard" }),
    });
    expect(login.status).toBe(303);
    const cookie = login.headers.getSetCookie().map((header) => header.split(";")[0]).join("; ");
    const page = await fetch(`${demo.baseUrl}/dashboard/jobs/${jobId}`, { headers: { cookie } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain("resolve_taxa");
    expect(html).toMatch(/succeeded/);

    const shown = await bash(rows!, database);
    expect(shown.code, shown.output).toBe(0);
    expect(shown.output).toMatch(/^1\s+Puma concolor\s+resolved\s+Puma concolor\s+SPECIES\s+EXACT/m);
    expect(shown.output).toMatch(/Felis concolor\s+resolved\s+Puma concolor/);
    expect(shown.output).toMatch(/Calopteryx\s+needs_review/);
    expect(shown.output).toMatch(/Fake species\s+no_match/);
    expect(shown.output).not.toMatch(/unresolved/);
  } finally {
    demo.killGroup("SIGINT");
    expect(await demo.exited).toBe(0);
    stopEmbeddedPostgresNow(database.EMBEDDED_POSTGRES_DIR); // only if the demo did not stop it
    await rm(dir, { recursive: true, force: true });
  }
});
