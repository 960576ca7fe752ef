/**
 * Respecting an upstream's limits from one process.
 *
 * A back-off gate remembers a Retry-After the upstream sent (429, 503, Wikidata's maxlag) and holds
 * back the calls after it: a short wait is waited out in-process; a longer one fails the call at
 * once, without calling, as a transient UpstreamError that carries the remaining wait. The job
 * wrapper turns that into a deferral of the job until then, with its attempt given back
 * (src/worker/outcomes.ts), so a long back-off never burns a job's attempts.
 *
 * A pacer adds one call at a time and a least gap between call starts (Wikimedia, IUCN).
 */
import { setTimeout as sleep } from "node:timers/promises";
import pLimit from "p-limit";
import { UpstreamError } from "./http.ts";

export interface BackoffGateOptions {
  upstream: string;
  /** Longest wait for a Retry-After before failing the call (for a deferral of its job) instead. */
  maxWaitMs: number;
  /**
   * Monotonic milliseconds (performance.now by default; Date.now() counts whole milliseconds of a
   * wall clock that can be set). Tests pass their own to read what the gate reads.
   */
  now?: () => number;
}

export interface BackoffGate {
  /** Runs the call once the upstream's back-off allows; records a Retry-After it answers with. */
  run<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Milliseconds until calls may go again; 0 when they may now. */
  blockedForMs(): number;
}

export function makeBackoffGate(options: BackoffGateOptions): BackoffGate {
  const now = options.now ?? (() => performance.now());
  let notBefore = Number.NEGATIVE_INFINITY;
  const blockedForMs = () => Math.max(0, notBefore - now());
  return {
    blockedForMs,
    async run(call, signal) {
      signal?.throwIfAborted();
      const waitMs = blockedForMs();
      if (waitMs > options.maxWaitMs) {
        const until = new Date(Date.now() + waitMs).toISOString();
        throw new UpstreamError(options.upstream, `asked to wait until ${until} (Retry-After); not called`, true, undefined, waitMs);
      }
      if (waitMs > 0) await sleep(waitMs, undefined, signal ? { signal } : {});
      try {
        return await call();
      } catch (error) {
        if (error instanceof UpstreamError && error.retryAfterMs !== undefined) {
          notBefore = Math.max(notBefore, now() + error.retryAfterMs);
        }
        throw error;
      }
    },
  };
}

export interface PacerOptions extends BackoffGateOptions {
  /** Least time between the starts of two calls. */
  minIntervalMs: number;
}

export interface Pacer {
  run<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

export function makePacer(options: PacerOptions): Pacer {
  const limit = pLimit(1);
  const now = options.now ?? (() => performance.now());
  const gate = makeBackoffGate({ ...options, now });
  let lastStart = Number.NEGATIVE_INFINITY;
  return {
    run: (call, signal) =>
      limit(() =>
        gate.run(async () => {
          // Checked again on waking: timers count whole milliseconds and can end a little early.
          for (let gapMs = lastStart + options.minIntervalMs - now(); gapMs > 0; gapMs = lastStart + options.minIntervalMs - now()) {
            await sleep(Math.ceil(gapMs), undefined, signal ? { signal } : {});
          }
          lastStart = now();
          return call();
        }, signal),
      ),
  };
}
