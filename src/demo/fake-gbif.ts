/**
 * A fake GBIF: a real HTTP server on 127.0.0.1 that answers `GET /v2/species/match` in the
 * matching-ws v2 shape (see ../shared/UPSTREAM_APIS.md §2) and `GET /v1/species/{key}` in the
 * NameUsage shape (§3). Names it knows come from recorded bodies in src/demo/recordings: the
 * v2 recordings verbatim, the others converted from the verbatim v1 recordings field by field;
 * usages are the recorded `/v1/species` bodies, unknown keys get GBIF's recorded 404 body.
 * Tests script faults per name or per usage key (503, 429, slow answers).
 */
import { FakeUpstream, readFixture, type FakeBehaviour, type RecordedRequest } from "./loopback.ts";

export type GbifBehaviour = FakeBehaviour;

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

export class FakeGbif extends FakeUpstream {
  #scripted = new Map<string, GbifBehaviour[]>();
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

  protected answer(url: URL): FakeBehaviour {
    const usageKey = /^\/v1\/species\/(\w+)$/.exec(url.pathname)?.[1];
    if (usageKey !== undefined) {
      const usage = this.#usages.get(usageKey) ?? KNOWN_USAGES[usageKey];
      return this.#scripted.get(usageKey)?.shift() ?? (usage ? { body: usage } : { status: 404, body: gbifNotFound(url.pathname) });
    }
    if (url.pathname === "/v2/species/match") {
      const name = url.searchParams.get("scientificName") ?? url.searchParams.get("name") ?? "";
      return (
        this.#scripted.get(name)?.shift() ?? {
          body: KNOWN_NAMES[name] ?? { diagnostics: { matchType: "NONE", issues: [], confidence: 100, note: "No match because of too little confidence" }, synonym: false },
        }
      );
    }
    return { status: 404, body: { timestamp: new Date().toISOString(), status: 404, error: "", message: `Not found: ${url.pathname}` } };
  }
}

export async function startFakeGbif(): Promise<FakeGbif> {
  return new FakeGbif().start();
}
