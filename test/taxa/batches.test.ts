import { describe, expect, test } from "vitest";
import { batchJobKey } from "../../src/taxa/batches.ts";

describe("batchJobKey", () => {
  test("is the same for the same rows in any order and with repeats, and readable", () => {
    const key = batchJobKey("resolve_taxa", { taxonIds: [3, 1, 2], force: false });
    expect(key).toMatch(/^resolve_taxa:1-3:3:[A-Za-z0-9_-]{22}$/);
    expect(batchJobKey("resolve_taxa", { force: false, taxonIds: [1, 2, 3, 3] })).toBe(key);
  });

  test("differs for different rows, even with the same first id, last id and count", () => {
    expect(batchJobKey("resolve_taxa", { taxonIds: [1, 2, 3] })).not.toBe(batchJobKey("resolve_taxa", { taxonIds: [1, 99, 3] }));
  });

  test("differs for any other field that changes the work, and by prefix", () => {
    const keys = [
      batchJobKey("resolve_taxa", { taxonIds: [1] }),
      batchJobKey("resolve_taxa", { taxonIds: [1], force: true }),
      batchJobKey("resolve_taxa", { taxonIds: [1], kingdom: "Plantae" }),
      batchJobKey("refresh_thumbnails", { taxonIds: [1] }),
      batchJobKey("resolve_taxa", { taxonIds: [1], staleAfterDays: 7 }),
    ];
    expect(new Set(keys).size).toBe(keys.length);
  });

  test("is no key for a job that names no rows", () => {
    expect(batchJobKey("resolve_taxa", { force: true })).toBeUndefined();
  });
});
