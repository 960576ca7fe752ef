/**
 * Reads the crontab (graphile-worker's format) and checks every line against the task registry
 * before the runner starts. graphile-worker itself would only fail at run time with
 * "Unsupported task", long after a deploy went out.
 */
import { readFile } from "node:fs/promises";
import { parseCrontab, type ParsedCronItem } from "graphile-worker";
import type { TaskRegistry } from "../registry.ts";

export class CrontabError extends Error {
  override name = "CrontabError";
}

/** A crontab line with the line number it came from. */
export interface CrontabEntry {
  line: number;
  /** The five time fields as written, e.g. "30 3 * * *" (UTC). */
  expression: string;
  /** How stale the entry's last success may get before it is reported overdue (`stale=`), or null. */
  maxStalenessMs: number | null;
  item: ParsedCronItem;
}

const DURATION_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "26h", "1d12h": graphile-worker's time phrases, in milliseconds; null when not one. */
function parseDuration(text: string): number | null {
  if (!/^(\d+[smhdw])+$/.test(text)) return null;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+)([smhdw])/g)) total += Number(amount) * DURATION_UNITS[unit!]!;
  return total;
}

/**
 * `stale=` is ours, not graphile-worker's (which refuses unknown options): take it out of the
 * line's options before graphile-worker parses the rest.
 */
function takeStaleness(line: string): { line: string; stale: string | null } {
  const words = line.split(/(\s+)/);
  const index = words.findIndex((word) => word.startsWith("?"));
  if (index < 0) return { line, stale: null };
  const params = words[index]!.slice(1).split("&");
  const found = params.find((param) => param.startsWith("stale="));
  if (!found) return { line, stale: null };
  words[index] = `?${params.filter((param) => param !== found).join("&")}`;
  return { line: words.join(""), stale: found.slice("stale=".length) };
}

const LINE_FORMAT = "expected: minute hour day month weekday task ?id=...&options {JSON5 payload}";

/**
 * graphile-worker's parse errors, made to say where and what: its "Invalid command specification"
 * covers every malformed task, options and payload part, and its JSON5 positions count from the
 * payload's first character rather than the line's.
 */
function explainParseError(message: string, line: string): string {
  const words = line.split(/\s+/);
  const timeFields = words.findIndex((word) => !/^[\d*,/-]+$/.test(word));
  if (timeFields >= 0 && timeFields < 5) return `${timeFields} time fields before '${words[timeFields]}', five are needed; ${LINE_FORMAT}`;
  if (words.length < 6) return `no task after the five time fields; ${LINE_FORMAT}`;
  const command = line.slice(line.indexOf(words[5]!, words.slice(0, 5).join(" ").length));
  const payloadAt = command.search(/\s[^?\s]/);
  const payload = payloadAt < 0 ? "" : command.slice(payloadAt).trim();
  const payloadColumn = line.length - command.length + (payloadAt < 0 ? 0 : command.indexOf(payload, payloadAt)) + 1;

  const json5 = /^Failed to parse JSON5 payload.*?: JSON5: (.*?) at (\d+):(\d+)$/.exec(message);
  if (json5) {
    const [, what, row, column] = json5;
    const at = row === "1" ? payloadColumn + Number(column) - 1 : null;
    return `the payload is not valid JSON5: ${what}${at ? ` at column ${at}` : ""} (the payload starts at column ${payloadColumn})`;
  }
  if (/^Invalid command specification/.test(message)) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_:-]*$/.test(words[5]!)) return `'${words[5]}' is not a task name; ${LINE_FORMAT}`;
    if (payload !== "" && !payload.startsWith("{")) return `the payload at column ${payloadColumn} must be a JSON5 object in braces, such as {taxonIds: [1]}, got '${payload}'`;
    if (payload !== "" && !payload.endsWith("}")) {
      const close = payload.lastIndexOf("}");
      return close < 0
        ? `the payload at column ${payloadColumn} has no closing '}'`
        : `unexpected text after the payload's closing '}' at column ${payloadColumn + close}: '${payload.slice(close + 1).trim()}'`;
    }
    return `the task, options or payload are malformed; ${LINE_FORMAT}`;
  }
  return message.replace(/ (on|in) line \d+ of crontab|line '\d+' of crontab/, "").trim();
}

export async function loadCrontab(file: string, registry: TaskRegistry): Promise<CrontabEntry[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new CrontabError(`cannot read crontab ${file}: ${(error as Error).message}`);
  }
  return checkCrontab(text, registry, file);
}

/** Parses and checks crontab text; throws a CrontabError naming the first bad line. */
export function checkCrontab(text: string, registry: TaskRegistry, source = "crontab"): CrontabEntry[] {
  const entries: CrontabEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    // One line, like a configuration error: where, what, and the line itself.
    const fail = (message: string): never => {
      throw new CrontabError(`${source} line ${line}: ${message} (in: ${trimmed})`);
    };
    const { line: forGraphile, stale } = takeStaleness(raw);
    const maxStalenessMs = stale === null ? null : parseDuration(stale);
    if (stale !== null && maxStalenessMs === null) return fail(`stale=${stale} is not a duration such as 26h or 2d`);
    let item: ParsedCronItem;
    try {
      // Parsed one line at a time so that errors carry this file's line numbers.
      [item] = parseCrontab(`${"\n".repeat(index)}${forGraphile}`) as [ParsedCronItem];
    } catch (error) {
      return fail(explainParseError((error as Error).message, forGraphile.trim()));
    }
    const task = registry.find(item.task);
    if (!task) {
      const suggestion = registry.suggest(item.task);
      return fail(`unknown task '${item.task}'${suggestion ? ` (did you mean '${suggestion}'?)` : ""}`);
    }
    if (!/[?&]id=/.test(trimmed.split(/\s+/).find((word) => word.startsWith("?")) ?? "")) {
      // The identifier keys backfill bookkeeping; one derived from the task name changes silently when lines move.
      return fail(`every line needs an explicit ?id=... (it keys backfill; never rename it)`);
    }
    const result = task.validate(item.payload ?? {});
    if (!result.ok) return fail(`payload for '${item.task}' is invalid: ${result.errors.join("; ")}`);
    // graphile-worker gives cron-fired jobs only the line's own options; fill in the task's
    // defaults so a scheduled job runs in its queue, with its attempts and priority, like any other.
    const { defaults } = task;
    const options = item.options;
    if (options.queueName === undefined && defaults.queueName !== null) options.queueName = defaults.queueName;
    options.maxAttempts ??= defaults.maxAttempts;
    options.priority ??= defaults.priority;
    entries.push({ line, expression: trimmed.split(/\s+/).slice(0, 5).join(" "), maxStalenessMs, item });
  }
  const seen = new Map<string, number>();
  for (const { line, item } of entries) {
    const first = seen.get(item.identifier);
    if (first !== undefined) {
      throw new CrontabError(`${source} line ${line}: id '${item.identifier}' is already used on line ${first}`);
    }
    seen.set(item.identifier, line);
  }
  return entries;
}
