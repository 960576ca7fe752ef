/**
 * GBIF species API client: v2 name matching against an explicit checklist, and name usages by key.
 * See ../shared/UPSTREAM_APIS.md §2-4 for the shapes and the etiquette (low concurrency, a
 * descriptive User-Agent, back off on 429/5xx).
 */
import { Ajv } from "ajv";
import pLimit from "p-limit";
import Type, { type Static } from "typebox";
import { fetchJson, UpstreamError } from "./http.ts";
import { makeBackoffGate } from "./pacing.ts";
import { compileOnFirstUse } from "./response-schema.ts";

const UPSTREAM = "GBIF";

/**
 * The concurrency cap (a task's `defaults.concurrency`) that every task calling GBIF shares: at most
 * two of their jobs run at once across every instance, so a backlog of batches cannot crowd out
 * other work or hammer GBIF (which asks for 1-2 concurrent requests). GBIF_CONCURRENCY bounds the
 * calls within each process besides.
 */
export const GBIF_TASKS_CAP = { limit: 2, group: "gbif", scope: "global" } as const;

/** GBIF Backbone Taxonomy: the integer keys Wikidata's P846 and existing rows use. */
export const GBIF_BACKBONE_CHECKLIST_KEY = "d7dddbf4-2cf0-4f39-9b2a-bb099caae36c";

const Usage = Type.Object({
  key: Type.String(),
  name: Type.String(),
  canonicalName: Type.Optional(Type.String()),
  rank: Type.Optional(Type.String()),
  status: Type.Optional(Type.String()),
});
const Rank = Type.Object({ key: Type.Optional(Type.String()), name: Type.String(), rank: Type.Optional(Type.String()) });
const MatchResponse = Type.Object({
  usage: Type.Optional(Usage),
  acceptedUsage: Type.Optional(Usage),
  classification: Type.Optional(Type.Array(Rank)),
  synonym: Type.Optional(Type.Boolean()),
  diagnostics: Type.Object({
    matchType: Type.String(),
    confidence: Type.Optional(Type.Number()),
    note: Type.Optional(Type.String()),
  }),
});
// GET /v1/species/{key}: backbone keys are integers here.
const NameUsageResponse = Type.Object({
  key: Type.Integer(),
  scientificName: Type.String(),
  canonicalName: Type.Optional(Type.String()),
  rank: Type.Optional(Type.String()),
  taxonomicStatus: Type.Optional(Type.String()),
  acceptedKey: Type.Optional(Type.Integer()),
  accepted: Type.Optional(Type.String()),
  deleted: Type.Optional(Type.String()),
});
export type GbifUsage = Static<typeof Usage>;
/** A backbone name usage as `/v1/species/{key}` returns it (the fields the freshness check reads). */
export type GbifNameUsage = Static<typeof NameUsageResponse>;
export type GbifMatchResponse = Static<typeof MatchResponse>;

export interface GbifMatch {
  /** diagnostics.matchType: EXACT, VARIANT, HIGHERRANK, NONE (and the rarer CANONICAL, AMBIGUOUS, UNSUPPORTED). */
  matchType: string;
  confidence: number | null;
  note: string | null;
  /** The matched usage; absent for NONE. */
  usage: GbifUsage | null;
  /** The accepted usage when the match is a synonym. */
  acceptedUsage: GbifUsage | null;
  /** The accepted taxon's lineage, kingdom first. */
  classification: Array<{ key?: string; name: string; rank?: string }>;
  synonym: boolean;
  checklistKey: string;
}

export interface GbifClientOptions {
  baseUrl: string;
  checklistKey: string;
  timeoutMs: number;
  /** Calls in flight at once from this process. */
  concurrency: number;
  userAgent: string;
}

export interface GbifClient {
  readonly checklistKey: string;
  match(query: { scientificName: string; kingdom?: string | null }, signal?: AbortSignal): Promise<GbifMatch>;
  /** The backbone name usage with this integer key; null when GBIF has no such key (404). Deleted usages are returned, with `deleted` set. */
  findUsage(backboneKey: string, signal?: AbortSignal): Promise<GbifNameUsage | null>;
}

const ajv = new Ajv({ allErrors: false, strict: false });
const isMatchResponse = compileOnFirstUse<GbifMatchResponse>(ajv, MatchResponse);
const isNameUsageResponse = compileOnFirstUse<GbifNameUsage>(ajv, NameUsageResponse);
const isNotFoundResponse = compileOnFirstUse<{ message: string }>(ajv, Type.Object({ message: Type.String() }));

export function makeGbifClient(options: GbifClientOptions): GbifClient {
  const limit = pLimit(options.concurrency);
  // After a 429 or 503 with Retry-After, this process holds its GBIF calls back until then: a short
  // wait in place, a longer one defers the job (GBIF asks clients to back off).
  const gate = makeBackoffGate({ upstream: UPSTREAM, maxWaitMs: 10_000 });
  const call = <T>(work: () => Promise<T>, signal: AbortSignal | undefined) => limit(() => gate.run(work, signal));
  const request = { upstream: UPSTREAM, userAgent: options.userAgent, timeoutMs: options.timeoutMs };
  return {
    checklistKey: options.checklistKey,
    match: (query, signal) =>
      call(async () => {
        const url = new URL("/v2/species/match", options.baseUrl);
        url.searchParams.set("scientificName", query.scientificName);
        url.searchParams.set("checklistKey", options.checklistKey);
        if (query.kingdom) url.searchParams.set("kingdom", query.kingdom);
        const { body } = await fetchJson(url, { ...request, headers: { "x-user-agent": options.userAgent }, signal });
        if (!isMatchResponse(body)) {
          const problem = ajv.errorsText(isMatchResponse.errors, { dataVar: "response" });
          throw new UpstreamError(UPSTREAM, `unexpected match response: ${problem}`, false);
        }
        return {
          matchType: body.diagnostics.matchType,
          confidence: body.diagnostics.confidence ?? null,
          note: body.diagnostics.note ?? null,
          usage: body.usage ?? null,
          acceptedUsage: body.acceptedUsage ?? null,
          classification: body.classification ?? [],
          synonym: body.synonym ?? false,
          checklistKey: options.checklistKey,
        };
      }, signal),
    findUsage: (backboneKey, signal) =>
      call(async () => {
        if (!/^\d+$/.test(backboneKey)) throw new UpstreamError(UPSTREAM, `/v1/species takes backbone integer keys, got '${backboneKey}'`, false);
        const url = new URL(`/v1/species/${backboneKey}`, options.baseUrl);
        const { status, body } = await fetchJson(url, { ...request, headers: { "x-user-agent": options.userAgent }, acceptStatuses: [404], signal });
        if (status === 404) {
          // Only GBIF's own "Entity not found" says the key is gone; any other 404 (a wrong base URL, a proxy) must not flip rows.
          if (isNotFoundResponse(body) && body.message.startsWith("Entity not found")) return null;
          throw new UpstreamError(UPSTREAM, `HTTP 404 from ${url.pathname} that is not GBIF's "Entity not found"`, false, 404);
        }
        if (!isNameUsageResponse(body)) {
          const problem = ajv.errorsText(isNameUsageResponse.errors, { dataVar: "response" });
          throw new UpstreamError(UPSTREAM, `unexpected name usage response: ${problem}`, false);
        }
        return body;
      }, signal),
  };
}
