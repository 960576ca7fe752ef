/**
 * One call at a time towards an upstream that asks for it (Wikimedia, IUCN), with a least gap
 * between call starts and respect for a Retry-After the upstream sent: later calls from this
 * process wait it out instead of knocking again. A wait longer than `maxWaitMs` is not waited
 * for in-process: the call fails as transient at once, and the job's retry comes back later.
 */
import { setTimeout as sleep } from "node:timers/promises";
import pLimit from "p-limit";
import { UpstreamError } from "./http.ts";

export interface PacerOptions {
  upstream: string;
  /** Least time between the starts of two calls. */
  minIntervalMs: number;
  /** Longest wait for a Retry-After before failing the call as transient instead. */
  maxWaitMs: number;
}

export interface Pacer {
  run<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

export function makePacer(options: PacerOptions): Pacer {
  const limit = pLimit(1);
  let lastStart = Number.NEGATIVE_INFINITY;
  let notBefore = 0;
  return {
    run: (call, signal) =>
      limit(async () => {
        signal?.throwIfAborted();
        const now = Date.now();
        const blockedMs = notBefore - now;
        if (blockedMs > options.maxWaitMs) {
          throw new UpstreamError(options.upstream, `asked to wait until ${new Date(notBefore).toISOString()} (Retry-After)`, true, undefined, blockedMs);
        }
        const waitMs = Math.max(blockedMs, lastStart + options.minIntervalMs - now);
        if (waitMs > 0) await sleep(waitMs, undefined, signal ? { signal } : {});
        lastStart = Date.now();
        try {
          return await call();
        } catch (error) {
          if (error instanceof UpstreamError && error.retryAfterMs !== undefined) {
            notBefore = Math.max(notBefore, Date.now() + error.retryAfterMs);
          }
          throw error;
        }
      }),
  };
}
