/**
 * What a finished attempt prints: one short line at info (or error, for a failure) with the job's
 * id, task and attempt, and the job row only at debug.
 */
import { pino } from "pino";
import { Writable } from "node:stream";
import { describe, expect } from "vitest";
import { enqueueJob } from "../../src/enqueue.ts";
import { makeWorkerLogger } from "../../src/observability/logger.ts";
import { insertTaxa, resetData, runDueJobs, test } from "../helpers/env.ts";

test.beforeEach(async ({ env }) => {
  await resetData(env);
});

const lineAbout = (logs: Array<Record<string, unknown>>, pattern: RegExp) => logs.filter((line) => pattern.test(String(line.message)));

describe("a finished attempt's log lines", () => {
  test("a success is one line with the job's id, task, attempt and duration; the row is at debug", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [id!] });
    await runDueJobs(env);

    const [completed, ...others] = lineAbout(env.logs, /^Completed task/);
    expect(others).toEqual([]);
    expect(completed).toMatchObject({ severity: "INFO", jobId: job.id, task: "resolve_taxa", attempt: 1, maxAttempts: 8, durationMs: expect.any(Number) });
    expect(completed!.message).toMatch(new RegExp(`^Completed task ${job.id} \\(resolve_taxa, [\\d.]+ms\\) with success$`));
    expect(completed).not.toHaveProperty("job");
    const [row] = lineAbout(env.logs, /^the job row of the line above$/);
    expect(row).toMatchObject({ severity: "DEBUG", jobId: job.id, job: { id: job.id, task_identifier: "resolve_taxa" } });
  });

  test("a failed attempt is one line too, without the stack; the error and the row are at debug", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    env.gbif.script("Puma concolor", { status: 503, body: {} });
    const job = await enqueueJob(env.db, env.registry, "resolve_taxa", { taxonIds: [id!] }, { maxAttempts: 1 });
    await runDueJobs(env);

    const [failed, ...others] = lineAbout(env.logs, /^Failed task/);
    expect(others).toEqual([]);
    expect(failed).toMatchObject({ severity: "ERROR", jobId: job.id, task: "resolve_taxa", attempt: 1, maxAttempts: 1 });
    expect(failed!.message).toMatch(new RegExp(`^Failed task ${job.id} \\(resolve_taxa, [\\d.]+ms, attempt 1 of 1\\) with error '.*GBIF: HTTP 503.*'$`));
    expect(failed).not.toHaveProperty("job");
    expect(failed).not.toHaveProperty("err");
    const [row] = lineAbout(env.logs, /^the job row of the line above$/);
    expect(row).toMatchObject({ severity: "DEBUG", jobId: job.id, err: { message: expect.stringMatching(/GBIF: HTTP 503/) } });
  });

  test("at info, a success is one line of JSON and nothing else", () => {
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(...chunk.toString().split("\n").filter(Boolean)), done()) });
    const logger = makeWorkerLogger(pino({ level: "info" }, destination));
    logger.scope({ label: "job" }).info("Completed task 7 (resolve_taxa, 12.34ms) with success", {
      job: { id: "7", task_identifier: "resolve_taxa", attempts: 1, max_attempts: 8, payload: { taxonIds: [1] } },
      duration: 12.34,
      success: true,
    } as never);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: "Completed task 7 (resolve_taxa, 12.34ms) with success", jobId: "7", durationMs: 12 });
    expect(lines[0]).not.toContain("taxonIds");
  });
});
