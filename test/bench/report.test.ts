import { describe, expect, it } from "vitest";
import { END_MARKER, evaluate, formatSummary, renderResults, START_MARKER, updateDocument, type Measure, type Results } from "../../bench/lib/report.ts";
import { percentiles, quantile, summarize } from "../../bench/lib/stats.ts";

describe("benchmark statistics", () => {
  it("interpolates quantiles between ranks", () => {
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([10], 0.99)).toBe(10);
    expect(percentiles(Array.from({ length: 101 }, (_, index) => 100 - index))).toEqual({ p50: 50, p95: 95, p99: 99 });
    expect(() => quantile([], 0.5)).toThrow(/no values/);
  });

  it("summarizes rounds as median, min and max", () => {
    expect(summarize([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, n: 3 });
    expect(formatSummary(summarize([4250, 2500, 4600]))).toBe("4,250 [2,500–4,600]");
    expect(formatSummary(summarize([2.84]))).toBe("2.84");
  });
});

const measure = (overrides: Partial<Measure>): Measure => ({
  id: "m",
  scenario: "1. Throughput",
  label: "drain",
  unit: "jobs/s",
  raw: [100, 90, 110],
  service: [95, 92, 99],
  target: { kind: "ratio-at-least", value: 0.9 },
  ...overrides,
});

describe("benchmark targets", () => {
  it("judges ratios, excesses and absolute limits on the medians", () => {
    expect(evaluate(measure({}))).toMatchObject({ verdict: "met", compared: "0.95×" });
    expect(evaluate(measure({ service: [80] }))).toMatchObject({ verdict: "missed", compared: "0.80×" });
    const latency = measure({ unit: "ms", raw: [5, 6, 7], service: [8.5, 9, 7], target: { kind: "excess-at-most", value: 2 } });
    expect(evaluate(latency)).toMatchObject({ verdict: "missed", compared: "+2.50 ms" });
    expect(evaluate(measure({ raw: null, unit: "ms", service: [400], target: { kind: "at-most", value: 1000 } }))).toMatchObject({ verdict: "met", ratio: null });
  });
});

describe("benchmark document", () => {
  const results: Results = {
    generatedAt: "2030-01-01T00:00:00.000Z",
    quick: false,
    durationSeconds: 300,
    machine: { cpu: "Test CPU × 2" },
    settings: { "worker concurrency": 10 },
    measures: [measure({}), measure({ id: "n", scenario: "2. Latency", label: "p99 | tail", unit: "ms", target: null })],
  };

  it("renders one table per scenario with the verdicts", () => {
    const text = renderResults(results);
    expect(text.startsWith(START_MARKER) && text.endsWith(END_MARKER)).toBe(true);
    expect(text).toContain("### 1. Throughput");
    expect(text).toContain("| drain (jobs/s) | 100 [90.0–110] | 95.0 [92.0–99.0] | 0.95× | ≥ 0.9× raw | **met** (0.95×) |");
    expect(text).toContain("| p99 \\| tail (ms) |");
  });

  it("replaces only the generated part of the document", () => {
    const before = `# Benchmarks\n\nintro\n\n${START_MARKER}\nold figures\n${END_MARKER}\n\n## Analysis\nkept\n`;
    const after = updateDocument(before, renderResults(results));
    expect(after).toContain("intro");
    expect(after).toContain("## Analysis\nkept");
    expect(after).not.toContain("old figures");
    expect(updateDocument("# Benchmarks\n", "generated")).toBe("# Benchmarks\n\ngenerated\n");
  });
});
