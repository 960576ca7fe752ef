import { readFile } from "node:fs/promises";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { checkCrontab, CrontabError, loadCrontab } from "../../src/cron/crontab.ts";
import { loadRegistry, type TaskRegistry } from "../../src/registry.ts";
import { PROJECT_ROOT } from "../helpers/service-process.ts";

let registry: TaskRegistry;
beforeAll(async () => {
  registry = await loadRegistry();
});

describe("the crontab", () => {
  it("that ships is valid, with an explicit id per line", async () => {
    const entries = await loadCrontab(path.join(PROJECT_ROOT, "crontab"), registry);
    expect(entries.length).toBeGreaterThan(0);
    const text = await readFile(path.join(PROJECT_ROOT, "crontab"), "utf8");
    for (const { line, item } of entries) expect(text.split("\n")[line - 1]).toContain(`id=${item.identifier}`);
    const nightly = entries.find((entry) => entry.item.identifier === "resolve_taxa_nightly")!;
    expect(nightly.item.options).toMatchObject({ backfillPeriod: 86_400_000, maxAttempts: 8, priority: 0 });
  });

  it("gives cron-fired jobs their task's defaults unless the line sets its own", () => {
    const [plain, own] = checkCrontab("0 4 * * * prune_job_history ?id=a\n0 5 * * * prune_job_history ?id=b&queue=other&max=2", registry);
    expect(plain!.item.options).toMatchObject({ queueName: "maintenance", maxAttempts: 3, priority: 0 });
    expect(own!.item.options).toMatchObject({ queueName: "other", maxAttempts: 2 });
  });
});

describe("checkCrontab stops start-up on a bad line, naming it", () => {
  const check = (text: string) => () => checkCrontab(text, registry);

  it("an unknown task, with a did-you-mean", () => {
    expect(check("# header\n\n30 3 * * * resolve_taxon ?id=nightly")).toThrow(
      /crontab line 3: unknown task 'resolve_taxon' \(did you mean 'resolve_taxa'\?\)/,
    );
  });

  it("an unknown task with nothing close", () => {
    expect(check("* * * * * send_newsletter ?id=x")).toThrow("crontab line 1: unknown task 'send_newsletter' (in: * * * * * send_newsletter ?id=x)");
  });

  it("a payload that is not JSON5, saying where and what", () => {
    expect(check("0 4 * * * resolve_taxa ?id=x {kingdom: Plantae}")).toThrow(CrontabError);
    expect(check("0 4 * * * resolve_taxa ?id=x {kingdom: Plantae}")).toThrow(
      "crontab line 1: the payload is not valid JSON5: invalid character 'P' at column 40 (the payload starts at column 30) (in: 0 4 * * * resolve_taxa ?id=x {kingdom: Plantae})",
    );
    expect(check("0 4 * * * resolve_taxa ?id=x {taxonIds: [1,}")).toThrow(/line 1: the payload is not valid JSON5: invalid character '\}' at column 44 /);
    expect(check('0 4 * * * resolve_taxa ?id=x {"taxonIds": [1]')).toThrow(/line 1: the payload at column 30 has no closing '\}'/);
    expect(check("0 4 * * * resolve_taxa ?id=x [1]")).toThrow(/line 1: the payload at column 30 must be a JSON5 object in braces, such as \{taxonIds: \[1\]\}, got '\[1\]'/);
    expect(check("0 4 * * * resolve_taxa ?id=x {taxonIds: [1]} extra")).toThrow(/line 1: unexpected text after the payload's closing '\}' at column 44: 'extra'/);
  });

  it("a malformed line, saying what the format is", () => {
    expect(check("0 4 * * resolve_taxa ?id=x")).toThrow(/line 1: 4 time fields before 'resolve_taxa', five are needed; expected: minute hour day month weekday task/);
    expect(check("0 4 * * * resolve.taxa ?id=x")).toThrow(/line 1: 'resolve.taxa' is not a task name/);
  });

  it("every message is one line", () => {
    for (const text of ["0 4 * * * resolve_taxa ?id=x {kingdom: Plantae}", "* * * * * send_newsletter ?id=x", "61 3 * * * resolve_taxa ?id=a", "0 4 * * resolve_taxa ?id=x"]) {
      expect(check(text)).toThrow(/^[^\n]+$/);
    }
  });

  it("a payload that fails the task's schema", () => {
    expect(check("0 4 * * 0 resolve_taxa ?id=weekly {limit: 0}")).toThrow(
      /crontab line 1: payload for 'resolve_taxa' is invalid: payload\/limit must be >= 1/,
    );
  });

  it("a line without an explicit id", () => {
    expect(check("30 3 * * * resolve_taxa ?fill=1d")).toThrow(/crontab line 1: every line needs an explicit \?id=/);
    expect(check("30 3 * * * resolve_taxa")).toThrow(/every line needs an explicit \?id=/);
  });

  it("the same id twice", () => {
    expect(check("30 3 * * * resolve_taxa ?id=a\n0 4 * * * resolve_taxa ?id=a")).toThrow(/line 2: id 'a' is already used on line 1/);
  });

  it("a bad time or option", () => {
    expect(check("61 3 * * * resolve_taxa ?id=a")).toThrow(/crontab line 1: /);
    expect(check("30 3 * * * resolve_taxa ?id=a&fill=forever")).toThrow(/crontab line 1: .*fill/);
  });

  it("accepts a good line with a payload", () => {
    const [entry] = checkCrontab('0 4 * * 0 resolve_taxa ?id=plantae_weekly&fill=2d {kingdom: "Plantae"}', registry);
    expect(entry!.item).toMatchObject({ task: "resolve_taxa", identifier: "plantae_weekly", payload: { kingdom: "Plantae" } });
  });
});
