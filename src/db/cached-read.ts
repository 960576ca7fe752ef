/**
 * A database read that many callers share: within `maxAgeMs` of the last answer they get that
 * answer, and those who ask while a read is in flight wait for that one read. So however often the
 * API, the dashboard and metrics ask, the database sees one query per interval.
 */
export function cachedRead<T>(read: () => Promise<T>, maxAgeMs: number): () => Promise<T> {
  let cached: { at: number; value: T } | undefined;
  let inFlight: Promise<T> | undefined;
  return async () => {
    if (cached && Date.now() - cached.at < maxAgeMs) return cached.value;
    inFlight ??= read()
      .then((value) => {
        cached = { at: Date.now(), value };
        return value;
      })
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };
}
