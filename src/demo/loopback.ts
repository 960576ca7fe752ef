/**
 * What the fake upstreams share: a real HTTP server on 127.0.0.1 and a free port that records every
 * request with its arrival time and counts the calls in flight; each fake decides its answers.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

const RECORDINGS = path.join(import.meta.dirname, "recordings");

/** A recorded upstream body from src/demo/recordings. */
export function readFixture(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(RECORDINGS, file), "utf8")) as Record<string, unknown>;
}

/** What a fake does for one request: answer (after a delay), or cut the connection. */
export type FakeBehaviour =
  | { body: unknown; status?: number; delayMs?: number; headers?: Record<string, string> }
  | { destroy: true };

export interface RecordedRequest {
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** When it arrived (performance.now() of this process). */
  at: number;
}

export abstract class FakeUpstream {
  readonly requests: RecordedRequest[] = [];
  /** The most calls that were ever in flight at once. */
  maxInFlight = 0;
  url = "";
  #inFlight = 0;
  readonly #server = http.createServer((request, response) => void this.#handle(request, response));
  /** How long an answer takes unless its behaviour says. */
  readonly #defaultDelayMs: number;

  constructor(defaultDelayMs = 0) {
    this.#defaultDelayMs = defaultDelayMs;
  }

  async start(): Promise<this> {
    this.url = await listenOnLoopback(this.#server);
    return this;
  }

  async stop(): Promise<void> {
    await closeServer(this.#server);
  }

  /** This fake's answer to a request. */
  protected abstract answer(url: URL, request: http.IncomingMessage): FakeBehaviour;

  async #handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", this.url);
    this.requests.push({ path: url.pathname, query: url.searchParams, headers: request.headers, at: performance.now() });
    this.#inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.#inFlight);
    try {
      const behaviour = this.answer(url, request);
      if ("destroy" in behaviour) {
        request.socket.destroy();
        return;
      }
      await delay(behaviour.delayMs ?? this.#defaultDelayMs, request);
      send(response, behaviour.status ?? 200, behaviour.body, behaviour.headers);
    } finally {
      this.#inFlight -= 1;
    }
  }
}

/** Listens on a free loopback port; returns the server's base URL. */
export async function listenOnLoopback(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes the server, cutting keep-alive connections instead of waiting for them. */
export async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export function send(response: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (response.destroyed) return;
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(typeof body === "string" ? body : JSON.stringify(body));
}

/** Waits like a slow upstream, but gives up when the client hangs up. */
export function delay(ms: number, request: http.IncomingMessage): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const onClose = () => {
      clearTimeout(timer);
      resolve();
    };
    // Removed once answered: a keep-alive socket carries many requests and would collect listeners.
    const timer = setTimeout(() => {
      request.socket.off("close", onClose);
      resolve();
    }, ms);
    request.socket.once("close", onClose);
  });
}
