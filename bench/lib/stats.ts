/** The little statistics the benchmark reports: percentiles of samples, medians with ranges of rounds. */

/** The q-quantile (0..1) of ascending values, interpolating linearly between ranks (R's type 7). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new Error("quantile of no values");
  if (q < 0 || q > 1) throw new Error(`quantile ${q} is outside 0..1`);
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  return sorted[lower]! + (sorted[upper]! - sorted[lower]!) * (position - lower);
}

export function percentiles(samples: readonly number[]): { p50: number; p95: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p95: quantile(sorted, 0.95), p99: quantile(sorted, 0.99) };
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Median with min and max: how the benchmark reports a figure measured once per round. */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: quantile(sorted, 0.5), min: sorted[0]!, max: sorted.at(-1)!, n: sorted.length };
}
