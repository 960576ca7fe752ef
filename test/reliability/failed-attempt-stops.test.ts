/**
 * A failed attempt stops its remaining work before it reports failure. Before, in the shared row
 * sweep, the first error that was not an upstream problem rejected the attempt at once while 18
 * of 20 queued rows went on calling GBIF and writing in the background, up to the time limit, as
 * the retry did the same rows again.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, test } from "vitest";
import { makeLogger } from "../../src/observability/logger.ts";
import { workThroughRows, type WorkOptions } from "../../src/taxa/batches.ts";
import { UpstreamError } from "../../src/upstream/http.ts";

const logger = makeLogger({ level: "silent", format: "json", version: "test", googleCloudProject: undefined });
const rows = Array.from({ length: 20 }, (_, i) => ({ id: i + 1 }));

/** Work that takes `ms` per row and records which rows started and which are still running. */
function tracked(fail: (row: { id: number }) => Error | undefined, ms = 30) {
  const started: number[] = [];
  let inFlight = 0;
  const options: WorkOptions<{ id: number }> = {
    concurrency: 2,
    what: "test rows",
    signal: new AbortController().signal,
    logger,
    recordError: async () => {},
    async work(row) {
      started.push(row.id);
      inFlight += 1;
      try {
        const error = fail(row);
        if (error) throw error;
        await sleep(ms);
        return "done";
      } finally {
        inFlight -= 1;
      }
    },
  };
  return { options, started, inFlight: () => inFlight };
}

describe("a batch that fails", () => {
  test("on a database error skips the rows not yet started and waits for those in flight before it rejects", async () => {
    const { options, started, inFlight } = tracked((row) => (row.id === 2 ? new Error("duplicate key value violates unique constraint") : undefined));
    await expect(workThroughRows(rows, options)).rejects.toThrow(/duplicate key/);
    expect(inFlight()).toBe(0); // row 1 was in flight and finished before the rejection
    expect(started).toEqual([1, 2]);
    await sleep(100);
    expect(started).toEqual([1, 2]); // nothing went on in the background
  });

  test("on a transient upstream failure does the same, and says how far it got", async () => {
    const { options, started, inFlight } = tracked((row) => (row.id === 3 ? new UpstreamError("GBIF", "HTTP 503 from /v2/species/match", true, 503) : undefined));
    await expect(workThroughRows(rows, options)).rejects.toThrow(/HTTP 503.*recorded 2 of 20 rows/);
    expect(inFlight()).toBe(0);
    expect(started.length).toBeLessThanOrEqual(4);
    const before = started.length;
    await sleep(100);
    expect(started.length).toBe(before);
  });

  test("when recording a row's permanent problem fails, stops as well", async () => {
    const { options, started } = tracked((row) => (row.id === 1 ? new UpstreamError("GBIF", "HTTP 400", false, 400) : undefined));
    options.recordError = async () => {
      throw new Error("connection terminated");
    };
    await expect(workThroughRows(rows, options)).rejects.toThrow(/connection terminated/);
    const before = started.length;
    await sleep(100);
    expect(started.length).toBe(before);
    expect(before).toBeLessThanOrEqual(3);
  });
});
