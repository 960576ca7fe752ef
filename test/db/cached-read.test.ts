import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { cachedRead } from "../../src/db/cached-read.ts";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A read that counts its calls and answers when the test lets it. */
function gatedRead() {
  const pending: Array<{ resolve(value: number): void; reject(error: Error): void }> = [];
  const read = vi.fn(() => new Promise<number>((resolve, reject) => pending.push({ resolve, reject })));
  return { read, answer: (value: number) => pending.shift()!.resolve(value), fail: (error: Error) => pending.shift()!.reject(error) };
}

describe("cachedRead", () => {
  test("callers that ask while a read is in flight share that one read", async () => {
    const { read, answer } = gatedRead();
    const get = cachedRead(read, 5000);
    const asked = [get(), get(), get()];
    answer(1);
    expect(await Promise.all(asked)).toEqual([1, 1, 1]);
    expect(read).toHaveBeenCalledTimes(1);
  });

  test("answers from the cache until maxAgeMs has passed, then reads again", async () => {
    const { read, answer } = gatedRead();
    const get = cachedRead(read, 5000);
    const first = get();
    answer(1);
    expect(await first).toBe(1);
    vi.advanceTimersByTime(4999);
    expect(await get()).toBe(1);
    expect(read).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    const second = get();
    answer(2);
    expect(await second).toBe(2);
    expect(read).toHaveBeenCalledTimes(2);
  });

  test("a failed read is not cached: the next caller reads again", async () => {
    const { read, answer, fail } = gatedRead();
    const get = cachedRead(read, 5000);
    const failed = get();
    fail(new Error("database away"));
    await expect(failed).rejects.toThrow("database away");
    const retried = get();
    answer(3);
    expect(await retried).toBe(3);
    expect(read).toHaveBeenCalledTimes(2);
  });
});
