import { describe, expect, test } from "vitest";
import { UpstreamError } from "../../src/upstream/http.ts";
import { makePacer } from "../../src/upstream/pacing.ts";

describe("makePacer", () => {
  test("runs calls one at a time, at least minIntervalMs apart", async () => {
    // What the pacer itself reads: the last reading before a call is when the pacer let it start.
    let reading = 0;
    const now = () => (reading = performance.now());
    const pacer = makePacer({ upstream: "Test", minIntervalMs: 30, maxWaitMs: 1000, now });
    let inFlight = 0;
    let maxInFlight = 0;
    const starts: number[] = [];
    await Promise.all(
      Array.from({ length: 4 }, () =>
        pacer.run(async () => {
          starts.push(reading);
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          await Promise.resolve();
          inFlight -= 1;
        }),
      ),
    );
    expect(maxInFlight).toBe(1);
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(30);
  });

  test("after a Retry-After, a short wait is waited out and a long one fails at once as transient", async () => {
    const short = makePacer({ upstream: "Test", minIntervalMs: 0, maxWaitMs: 1000 });
    // From before the 429: the wait runs from when it was answered, so the next call is at least
    // 50 ms after this (less a millisecond: timers count whole milliseconds).
    const before = performance.now();
    await expect(short.run(() => Promise.reject(new UpstreamError("Test", "HTTP 429", true, 429, 50)))).rejects.toThrow(/429/);
    await short.run(async () => undefined);
    expect(performance.now() - before).toBeGreaterThanOrEqual(49);

    const long = makePacer({ upstream: "Test", minIntervalMs: 0, maxWaitMs: 1000 });
    await expect(long.run(() => Promise.reject(new UpstreamError("Test", "HTTP 429", true, 429, 60_000)))).rejects.toThrow(/429/);
    let called = false;
    const refused = long.run(async () => {
      called = true;
    });
    await expect(refused).rejects.toMatchObject({ transient: true, message: expect.stringMatching(/asked to wait until/) });
    expect(called).toBe(false);
  });

  test("the caller's abort signal ends a wait", async () => {
    const pacer = makePacer({ upstream: "Test", minIntervalMs: 60_000, maxWaitMs: 1000 });
    await pacer.run(async () => undefined);
    const controller = new AbortController();
    const waiting = pacer.run(async () => undefined, controller.signal);
    controller.abort(new Error("shutting down"));
    await expect(waiting).rejects.toThrow();
  });
});
