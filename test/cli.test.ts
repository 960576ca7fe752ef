import { sql } from "kysely";
import { describe, expect } from "vitest";
import { runCli, USAGE } from "../src/cli.ts";
import { findTaxon, insertTaxa, listJobs, resetData, test, testEnvironment, type TestEnv } from "./helpers/env.ts";
import { runToCompletion } from "./helpers/service-process.ts";

async function cli(env: TestEnv, ...argv: string[]) {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), loadConfig: () => env.config });
  return { code, stdout, stderr };
}

test.beforeEach(async ({ env }) => {
  await resetData(env);
  await env.db.deleteFrom("observing_jobs.worker_heartbeats").execute();
});

/** A live pool of a running instance, as its heartbeats record it (null tasks: an instance from before the column). */
async function runningInstance(env: TestEnv, tasks: string[] | null) {
  const instance = `instance-${Math.random().toString(16).slice(2)}`;
  await sql`
    insert into observing_jobs.worker_heartbeats (pool_id, instance_id, hostname, pid, runner, tasks)
    values (${`${instance}-main`}, ${instance}, 'test', 1, 'main', ${tasks})`.execute(env.db);
}

describe("observing-jobs add", () => {
  test("enqueues a job with the task's defaults and the given options", async ({ env }) => {
    await runningInstance(env, ["resolve_taxa"]);
    const result = await cli(env, "add", "resolve_taxa", "--payload", '{"taxonIds":[7]}', "--priority", "3", "--max-attempts", "2", "--run-at", "2030-01-01T00:00:00Z");
    expect(result).toMatchObject({ code: 0, stderr: "" });
    const printed = JSON.parse(result.stdout) as { jobId: string; task: string };
    expect(printed.task).toBe("resolve_taxa");
    const [job] = await listJobs(env.db);
    expect(job).toMatchObject({ id: printed.jobId, task_identifier: "resolve_taxa", max_attempts: 2 });
    expect(job!.run_at.toISOString()).toBe("2030-01-01T00:00:00.000Z");
  });

  test("refuses a payload that fails the schema and enqueues nothing", async ({ env }) => {
    const result = await cli(env, "add", "resolve_taxa", "--payload", '{"taxonIds":"42"}');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/invalid payload for task 'resolve_taxa': payload\/taxonIds must be array/);
    expect(await listJobs(env.db)).toHaveLength(0);
  });

  test("checks the payload before it reads the configuration or connects", async () => {
    for (const command of ["add", "run"]) {
      let stderr = "";
      const code = await runCli([command, "resolve_taxa", "--payload", '{"taxonIds":[1],"colour":"red"}'], {
        stdout: () => {},
        stderr: (text) => (stderr += text),
        loadConfig: () => {
          throw new Error("read the configuration before checking the payload");
        },
      });
      expect({ code, stderr }).toEqual({ code: 2, stderr: "observing-jobs: invalid payload for task 'resolve_taxa': payload has unknown property 'colour'\n" });
    }
  });

  test("refuses a task the running instances do not know, unless forced", async ({ env }) => {
    await runningInstance(env, ["resolve_taxa"]);
    const refused = await cli(env, "add", "backfill_kingdom", "--payload", '{"kingdom":"Plantae"}');
    expect(refused).toEqual({
      code: 1,
      stdout: "",
      stderr:
        "observing-jobs: the running instance does not know task 'backfill_kingdom' (it started before the task was added): restart the service to load it, or pass --force to enqueue the job anyway\n",
    });
    expect(await listJobs(env.db)).toHaveLength(0);

    const forced = await cli(env, "add", "backfill_kingdom", "--payload", '{"kingdom":"Plantae"}', "--force");
    expect(forced).toMatchObject({ code: 0, stderr: "" });
    expect(await listJobs(env.db, "backfill_kingdom")).toHaveLength(1);
  });

  test("enqueues when one running instance knows the task, or when the instances cannot say", async ({ env }) => {
    await runningInstance(env, ["resolve_taxa"]);
    await runningInstance(env, ["resolve_taxa", "backfill_kingdom"]);
    expect(await cli(env, "add", "backfill_kingdom", "--payload", '{"kingdom":"Plantae"}')).toMatchObject({ code: 0, stderr: "" });
    await env.db.deleteFrom("observing_jobs.worker_heartbeats").execute();
    await runningInstance(env, null);
    expect(await cli(env, "add", "backfill_kingdom", "--payload", '{"kingdom":"Fungi"}')).toMatchObject({ code: 0, stderr: "" });
    expect(await listJobs(env.db, "backfill_kingdom")).toHaveLength(2);
  });

  test("warns, and enqueues, when no instance runs at all", async ({ env }) => {
    // A pool that stopped beating longer ago than the rescue threshold does not count as running.
    await runningInstance(env, ["backfill_kingdom"]);
    await env.db.updateTable("observing_jobs.worker_heartbeats").set({ last_seen: new Date(Date.now() - 3_600_000) }).execute();
    const result = await cli(env, "add", "backfill_kingdom", "--payload", '{"kingdom":"Plantae"}');
    expect(result.code).toBe(0);
    expect(result.stderr).toBe("observing-jobs: warning: no service instance is running; the job waits in the queue until one starts\n");
    expect(await listJobs(env.db, "backfill_kingdom")).toHaveLength(1);
  });
});

describe("observing-jobs run", () => {
  test("runs the task in-process, prints its result and exits 0", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    const result = await cli(env, "run", "resolve_taxa", "--payload", JSON.stringify({ taxonIds: [id] }));
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ task: "resolve_taxa", status: "succeeded", result: { requested: 1, worked: 1, counts: { resolved: 1 } } });
    expect((await findTaxon(env.db, id!)).status).toBe("resolved");
    expect(await listJobs(env.db)).toHaveLength(0);
  });

  test("exits 1 with the error when the task fails", async ({ env }) => {
    const [id] = await insertTaxa(env.db, [{ scientific_name: "Puma concolor" }]);
    env.gbif.script("Puma concolor", { status: 503, body: {} });
    const result = await cli(env, "run", "resolve_taxa", "--payload", JSON.stringify({ taxonIds: [id] }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/GBIF: HTTP 503/);
  });
});

describe("bad arguments get a usage error naming the argument", () => {
  const cases: Array<[string[], RegExp]> = [
    [["frobnicate"], /unknown command 'frobnicate'/],
    [["add"], /'add' takes exactly one task name, got 0/],
    [["add", "resolve_taxa", "--payload", "{nope"], /--payload must be JSON/],
    [["add", "resolve_taxa", "--run-at", "tomorrow"], /--run-at must be an ISO-8601 time, got 'tomorrow'/],
    [["add", "resolve_taxa", "--priority", "high"], /--priority must be an integer/],
    [["add", "resolve_taxa", "--colour", "red"], /Unknown option '--colour'/],
    [["migrate", "--payload", "{}"], /option --payload does not apply to 'migrate'/],
    [["run", "resolve_taxa", "--queue", "q"], /option --queue does not apply to 'run'/],
    [["tasks", "extra"], /'tasks' takes no arguments/],
  ];
  for (const [argv, message] of cases) {
    test(`observing-jobs ${argv.join(" ")}`, async ({ env }) => {
      const result = await cli(env, ...argv);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toContain("usage: observing-jobs");
    });
  }

  test("an unknown task gets a did-you-mean and no connection is made", async ({ env }) => {
    const result = await cli(env, "add", "resolve_taxon");
    expect(result).toMatchObject({ code: 2, stderr: "observing-jobs: unknown task 'resolve_taxon' (did you mean 'resolve_taxa'?)\n" });
  });

  test("help prints the usage", async ({ env }) => {
    expect(await cli(env, "help")).toEqual({ code: 0, stdout: `${USAGE}\n`, stderr: "" });
  });
});

describe("the observing-jobs binary", () => {
  test("migrates and enqueues from a real process", async ({ env }) => {
    const environment = testEnvironment({ DATABASE_URL: env.database.url, LOG_LEVEL: "warn" });
    const migrated = await runToCompletion(["bin/observing-jobs.js", "migrate"], environment);
    expect(migrated).toMatchObject({ code: 0, stdout: "migrations applied\n" });
    const added = await runToCompletion(["bin/observing-jobs.js", "add", "resolve_taxa", "--payload", '{"force":true}'], environment);
    expect(added.code).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({ task: "resolve_taxa" });
    expect(await listJobs(env.db, "resolve_taxa")).toHaveLength(1);
  });

  test("fails on a bad setting with the variable's name", async () => {
    const result = await runToCompletion(["bin/observing-jobs.js", "migrate"], testEnvironment({ WORKER_CONCURRENCY: "lots" }));
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/Invalid configuration: WORKER_CONCURRENCY must be integer, got "lots"/);
  });
});

describe("observing-jobs pause and resume", () => {
  test("pause and resume a task, recorded with --by and --reason (or the OS user); both idempotent", async ({ env }) => {
    await sql`truncate observing_jobs.pauses, observing_jobs.pause_events`.execute(env.db);
    const paused = await cli(env, "pause", "task", "resolve_taxa", "--reason", "GBIF is down", "--by", "alice");
    expect(paused).toMatchObject({ code: 0, stderr: "" });
    expect(JSON.parse(paused.stdout)).toMatchObject({ paused: true, changed: true, kind: "task", name: "resolve_taxa", pausedBy: "alice", reason: "GBIF is down" });
    const again = await cli(env, "pause", "task", "resolve_taxa");
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ changed: false, pausedBy: "alice" });
    expect(again.stderr).toBe("observing-jobs: task 'resolve_taxa' was already paused (by alice); the first pause stands\n");
    // A job added meanwhile waits, and `add` says why.
    await runningInstance(env, ["resolve_taxa"]);
    const added = await cli(env, "add", "resolve_taxa", "--payload", '{"taxonIds":[7]}');
    expect(added.code).toBe(0);
    expect(added.stderr).toMatch(/^observing-jobs: warning: task 'resolve_taxa' is paused \(by alice since .*: GBIF is down\); the job waits until it is resumed\n$/);
    const listed = await cli(env, "pauses");
    expect(listed.stdout.trim().split("\n").map((line) => JSON.parse(line))).toMatchObject([{ kind: "task", name: "resolve_taxa", pausedBy: "alice" }]);

    expect(await cli(env, "resume", "task", "resolve_taxa")).toMatchObject({ code: 0, stdout: `${JSON.stringify({ paused: false, changed: true, kind: "task", name: "resolve_taxa" })}\n` });
    expect((await cli(env, "resume", "task", "resolve_taxa")).stderr).toBe("observing-jobs: task 'resolve_taxa' was not paused\n");
    const { rows } = await sql<{ action: string; actor: string }>`select action, actor from observing_jobs.pause_events order by id`.execute(env.db);
    expect(rows).toEqual([
      { action: "paused", actor: "alice" },
      { action: "resumed", actor: expect.stringMatching(/^cli:.+/) },
    ]);
  });

  test("usage errors exit 2 naming the argument; an unknown name exits 2 with a did-you-mean", async ({ env }) => {
    const cases: Array<[string[], RegExp]> = [
      [["pause"], /'pause' takes a kind \(task, queue, group\) and a name, e\.g\. 'pause task resolve_taxa', got 0 argument/],
      [["pause", "task"], /'pause' takes a kind .* got 1 argument/],
      [["resume", "task", "a", "b"], /'resume' takes a kind .* got 3 argument/],
      [["pause", "tasks", "resolve_taxa"], /'pause': the kind must be one of task, queue, group, got 'tasks'/],
      [["pause", "task", " "], /'pause': the name must not be empty/],
      [["pause", "task", "resolve_taxa", "--by", ""], /--by must not be empty/],
      [["pause", "task", "resolve_taxa", "--reason", "x".repeat(501)], /--reason must be at most 500 characters, got 501/],
      [["pause", "task", "resolve_taxa", "--payload", "{}"], /option --payload does not apply to 'pause'/],
      [["pauses", "extra"], /'pauses' takes no arguments, got 'extra'/],
    ];
    for (const [argv, message] of cases) {
      const result = await cli(env, ...argv);
      expect(result.code, argv.join(" ")).toBe(2);
      expect(result.stderr, argv.join(" ")).toMatch(message);
    }
    const unknown = await cli(env, "pause", "group", "gbfi");
    expect(unknown).toMatchObject({ code: 2, stderr: "observing-jobs: unknown cap group 'gbfi' (did you mean 'gbif'?)\n" });
    expect((await cli(env, "resume", "task", "resolve_taxon")).stderr).toBe("observing-jobs: unknown task 'resolve_taxon' (did you mean 'resolve_taxa'?)\n");
  });

  test("a reason with a NUL or a lone surrogate is stored cleaned, not refused by the database", async ({ env }) => {
    const result = await cli(env, "pause", "queue", "wikidata", "--reason", "down\u0000 \ud800again");
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).reason.includes("\u0000")).toBe(false);
    expect((await cli(env, "resume", "queue", "wikidata")).code).toBe(0);
  });
});
