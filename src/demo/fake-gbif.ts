/**
 * A fake GBIF: a real HTTP server on 127.0.0.1 that answers `GET /v2/species/match` in the
 * matching-ws v2 shape (see ../shared/UPSTREAM_APIS.md §2) and `GET /v1/species/{key}` in the
 * NameUsage shape (§3). Names it knows come from recorded bodies in src/demo/recordings: the
 * v2 recordings verbatim, the others converted from the verbatim v1 recordings field by field;
 * usages are the recorded `/v1/species` bodies, unknown keys get GBIF's recorded 404 body.
 * Tests script faults per name or per usage key (503, 429, slow answers).
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import { closeServer, listenOnLoopback } from "./loopback.ts";
import path from "node:path";

const FIXTURES = path.join(import.meta.dirname, "recordings");

export function readFixture(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(FIXTURES, file), "utf8")) as Record<string, unknown>;
}

/** What the fake does for one request. */
export type FakeBehaviour =
  | { body: unknown; status?: number; delayMs?: number; headers?: Record<string, string> }
  | { destroy: true };
export type GbifBehaviour = FakeBehaviour;

export interface RecordedRequest {
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
}

const RANKS = ["kingdom", "phylum", "class", "order", "family", "genus", "species"] as const;

/** A v1 match body (verbatim recording) in the v2 NameUsageMatch shape; keys become strings. */
export function v2FromV1(v1: Record<string, unknown>): Record<string, unknown> {
  const matchType = v1.matchType === "FUZZY" ? "VARIANT" : String(v1.matchType);
  const diagnostics = { matchType, confidence: v1.confidence, issues: [], ...(v1.note ? { note: v1.note } : {}) };
  if (matchType === "NONE") return { diagnostics, synonym: false };
  const usage = {
    key: String(v1.usageKey),
    name: v1.scientificName,
    canonicalName: v1.canonicalName,
    rank: v1.rank,
    status: v1.status,
  };
  const classification = RANKS.filter((rank) => typeof v1[rank] === "string").map((rank) => ({
    key: String(v1[`${rank}Key`]),
    name: v1[rank],
    rank: rank.toUpperCase(),
  }));
  const accepted = v1.acceptedUsageKey
    ? { acceptedUsage: { key: String(v1.acceptedUsageKey), name: v1.species, canonicalName: v1.species, rank: v1.rank, status: "ACCEPTED" } }
    : {};
  return { usage, ...accepted, classification, diagnostics, synonym: Boolean(v1.synonym) };
}

/** Names the fake answers out of the box, from the recordings. */
export const KNOWN_NAMES: Record<string, unknown> = {
  "Puma concolor": v2FromV1(readFixture("gbif-v1-match-exact-puma-concolor.json")),
  "Felis concolor": v2FromV1(readFixture("gbif-v1-match-synonym-felis-concolor.json")),
  "Puma concuolor": v2FromV1(readFixture("gbif-v1-match-fuzzy-puma-concuolor.json")),
  Calopteryx: v2FromV1(readFixture("gbif-v1-match-higherrank-calopteryx-rank-species.json")),
  "Fake species": v2FromV1(readFixture("gbif-v1-match-none-fake-species.json")),
  "Helianthus annuus": readFixture("gbif-v2-match-exact-helianthus-annuus.json"),
  "Calopteryx fakeus": readFixture("gbif-v2-match-none-calopteryx-fakeus.json"),
  // An ambiguous homonym: the NONE shape of the recorded "Multiple equal matches for Calopteryx" reply.
  Oenanthe: {
    diagnostics: { matchType: "NONE", issues: [], confidence: 100, note: "Multiple equal matches for Oenanthe" },
    synonym: false,
  },
};

/** Backbone usages the fake answers at /v1/species/{key}, from the recordings. */
export const KNOWN_USAGES: Record<string, unknown> = {
  "2435099": readFixture("gbif-v1-species-2435099-puma-concolor.json"),
  "8933000": readFixture("gbif-v1-species-8933000-synonym-fringilla-domestica.json"),
  "3119195": readFixture("gbif-v1-species-3119195-deleted.json"),
};

/** GBIF's recorded 404 body, for the path that was asked for. */
export function gbifNotFound(path: string): Record<string, unknown> {
  return { ...readFixture("gbif-v1-species-404-not-found.json"), message: `Entity not found for uri: ${path.replace(/^\/v1/, "")}` };
}

export class FakeGbif {
  readonly requests: RecordedRequest[] = [];
  #server: http.Server;
  #scripted = new Map<string, GbifBehaviour[]>();
  #inFlight = 0;
  /** The most calls that were ever in flight at once. */
  maxInFlight = 0;
  url = "";

  constructor() {
    this.#server = http.createServer((request, response) => void this.#handle(request, response));
  }

  async start(): Promise<this> {
    this.url = await listenOnLoopback(this.#server);
    return this;
  }

  async stop(): Promise<void> {
    await closeServer(this.#server);
  }

  /** Usages added by a test beside the recorded ones (cleared by reset). */
  #usages = new Map<string, unknown>();

  /** The next answers for a name (or a usage key), used up in order; afterwards it answers normally again. */
  script(name: string, ...behaviours: GbifBehaviour[]): void {
    this.#scripted.set(name, [...(this.#scripted.get(name) ?? []), ...behaviours]);
  }

  /** Serves this body at /v1/species/{key} until reset. */
  addUsage(key: string, body: unknown): void {
    this.#usages.set(key, body);
  }

  reset(): void {
    this.requests.length = 0;
    this.#scripted.clear();
    this.#usages.clear();
    this.maxInFlight = 0;
  }

  matchRequests(): RecordedRequest[] {
    return this.requests.filter((request) => request.path === "/v2/species/match");
  }

  /** The usage keys asked for at /v1/species/{key}, in order. */
  usageRequests(): string[] {
    return this.requests.flatMap((request) => /^\/v1\/species\/(\w+)$/.exec(request.path)?.[1] ?? []);
  }

  async #handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", this.url);
    this.requests.push({ path: url.pathname, query: url.searchParams, headers: request.headers });
    const usageKey = /^\/v1\/species\/(\w+)$/.exec(url.pathname)?.[1];
    let behaviour: FakeBehaviour;
    if (usageKey !== undefined) {
      const usage = this.#usages.get(usageKey) ?? KNOWN_USAGES[usageKey];
      behaviour = this.#scripted.get(usageKey)?.shift() ?? (usage ? { body: usage } : { status: 404, body: gbifNotFound(url.pathname) });
    } else if (url.pathname === "/v2/species/match") {
      const name = url.searchParams.get("scientificName") ?? url.searchParams.get("name") ?? "";
      behaviour = this.#scripted.get(name)?.shift() ?? {
        body: KNOWN_NAMES[name] ?? { diagnostics: { matchType: "NONE", issues: [], confidence: 100, note: "No match because of too little confidence" }, synonym: false },
      };
    } else {
      return send(response, 404, { timestamp: new Date().toISOString(), status: 404, error: "", message: `Not found: ${url.pathname}` });
    }
    this.#inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.#inFlight);
    try {
      if ("destroy" in behaviour) {
        request.socket.destroy();
        return;
      }
      if (behaviour.delayMs) await delay(behaviour.delayMs, request);
      send(response, behaviour.status ?? 200, behaviour.body, behaviour.headers);
    } finally {
      this.#inFlight -= 1;
    }
  }
}

export async function startFakeGbif(): Promise<FakeGbif> {
  return new FakeGbif().start();
}

export function send(response: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (response.destroyed) return;
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(typeof body === "string" ? body : JSON.stringify(body));
}

/** Waits like a slow upstream, but gives up when the client hangs up. */
export function delay(ms: number, request: http.IncomingMessage): Promise<void> {
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
