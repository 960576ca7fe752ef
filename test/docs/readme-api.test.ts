import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { expect, it } from "vitest";
import { createTestDatabase } from "../helpers/database.ts";
import { testEnvironment } from "../helpers/env.ts";
import { PROJECT_ROOT, startChild } from "../helpers/service-process.ts";

/** The README's API examples, run as written against a real service (only the host and port change). */
it("the README's curl examples work", async () => {
  const readme = await readFile(path.join(PROJECT_ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("### The HTTP API"));
  const [start, examples] = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
  const token = /API_TOKENS=(\S+)/.exec(start!)![1]!;
  expect(examples).toContain(`TOKEN=${token}`);

  const database = await createTestDatabase();
  const service = startChild(["src/main.ts"], testEnvironment({ DATABASE_URL: database.url, API_TOKENS: token, LOG_LEVEL: "info" }));
  try {
    await service.waitForStatus("/readyz", 200);
    // -f makes curl fail on an HTTP error, so every example must succeed.
    const script = `set -euo pipefail\n${examples!.replaceAll("localhost:8080", new URL(service.baseUrl).host).replaceAll("curl -s ", "curl -sf ")}`;
    const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn("bash", ["-c", script], { stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.on("exit", (code) => resolve({ code, output }));
    });
    expect(result.output).toContain('"task":"resolve_taxa"');
    expect(result.code, result.output).toBe(0);
  } finally {
    service.kill();
    await service.exited;
    await database.drop();
  }
});
