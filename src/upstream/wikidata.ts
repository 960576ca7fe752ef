/**
 * Wikidata client: the item whose P846 ("GBIF taxon ID") is a backbone key, and that item's
 * P18 image. See ../shared/UPSTREAM_APIS.md §5-6. Wikimedia's etiquette is built in: a
 * descriptive User-Agent, one request at a time per process, `maxlag=5` on every call (a lagging
 * server answers `maxlag` with Retry-After, which later calls honour), ids batched up to 50.
 * Node's fetch asks for gzip itself (accept-encoding) and inflates the answer.
 */
import { Ajv } from "ajv";
import Type, { type Static } from "typebox";
import { compileOnFirstUse } from "./response-schema.ts";
import { fetchJson, retryAfterMs, UpstreamError } from "./http.ts";
import { makePacer } from "./pacing.ts";

const UPSTREAM = "Wikidata";
/** wbgetentities takes at most 50 ids per call. */
export const MAX_ENTITIES_PER_CALL = 50;
/** Thumbnail widths Wikimedia serves; others are refused with 400 or 429 (see UPSTREAM_APIS.md §0). */
export const STANDARD_THUMBNAIL_WIDTHS = [20, 40, 60, 120, 250, 330, 500, 960, 1280, 1920, 3840] as const;
/** Commons resolves Special:FilePath to the file's current thumbnail URL (see commonsThumbnailUrl). */
const COMMONS = "https://commons.wikimedia.org";

const ApiError = Type.Object({ error: Type.Object({ code: Type.String(), info: Type.Optional(Type.String()) }) });
const SearchResponse = Type.Object({
  query: Type.Object({
    searchinfo: Type.Optional(Type.Object({ totalhits: Type.Integer() })),
    search: Type.Array(Type.Object({ title: Type.String() })),
  }),
});
const Statement = Type.Object({
  mainsnak: Type.Object({
    snaktype: Type.String(),
    datavalue: Type.Optional(Type.Object({ value: Type.Unknown(), type: Type.String() })),
  }),
  rank: Type.String(),
});
const EntitiesResponse = Type.Object({
  entities: Type.Record(
    Type.String(),
    Type.Object({
      id: Type.String(),
      missing: Type.Optional(Type.String()),
      claims: Type.Optional(Type.Record(Type.String(), Type.Array(Statement))),
    }),
  ),
});
export type WikidataStatement = Static<typeof Statement>;

const ajv = new Ajv({ allErrors: false, strict: false });
const isApiError = compileOnFirstUse<Static<typeof ApiError>>(ajv, ApiError);
const isSearchResponse = compileOnFirstUse<Static<typeof SearchResponse>>(ajv, SearchResponse);
const isEntitiesResponse = compileOnFirstUse<Static<typeof EntitiesResponse>>(ajv, EntitiesResponse);

/** What Wikidata holds for one requested item id. */
export type WikidataItemImage =
  /** `itemId` is the item's current id: a merged item answers with the id it was merged into. */
  | { kind: "image"; itemId: string; file: string }
  | { kind: "no_image"; itemId: string }
  | { kind: "missing" };

export interface WikidataClientOptions {
  baseUrl: string;
  timeoutMs: number;
  userAgent: string;
  /** Width of the thumbnail URLs built for this deployment: a standard Wikimedia width. */
  thumbnailWidth: number;
}

export interface WikidataClient {
  readonly thumbnailWidth: number;
  /** Item ids (QIDs) whose P846 is this GBIF backbone key: at most two, enough to tell "one" from "ambiguous". */
  findItemsByGbifKey(gbifKey: string, signal?: AbortSignal): Promise<string[]>;
  /** The P18 image of each item, keyed by the requested id. Up to MAX_ENTITIES_PER_CALL ids per call. */
  findImages(itemIds: readonly string[], signal?: AbortSignal): Promise<Map<string, WikidataItemImage>>;
}

/** Error codes that say "later", not "never" (API:Etiquette, API:Errors and warnings). */
const TRANSIENT_CODES = new Set(["maxlag", "ratelimited", "readonly"]);

export function makeWikidataClient(options: WikidataClientOptions): WikidataClient {
  // A long lag is better waited for by deferring the job (attempt given back) than by a request holding the queue.
  const pacer = makePacer({ upstream: UPSTREAM, minIntervalMs: 0, maxWaitMs: 10_000 });
  const request = { upstream: UPSTREAM, userAgent: options.userAgent, timeoutMs: options.timeoutMs };

  async function call(params: Record<string, string>, signal: AbortSignal | undefined): Promise<unknown> {
    const url = new URL("/w/api.php", options.baseUrl);
    for (const [name, value] of Object.entries({ ...params, maxlag: "5", format: "json" })) url.searchParams.set(name, value);
    return pacer.run(async () => {
      const { body, headers } = await fetchJson(url, { ...request, signal });
      // Wikidata reports API errors with HTTP 200 and an `error` object.
      if (isApiError(body)) {
        const { code, info } = body.error;
        throw new UpstreamError(UPSTREAM, `API error ${code}${info ? `: ${info}` : ""}`, TRANSIENT_CODES.has(code) || code.startsWith("internal_api_error"), undefined, retryAfterMs(headers));
      }
      return body;
    }, signal);
  }

  return {
    thumbnailWidth: options.thumbnailWidth,
    async findItemsByGbifKey(gbifKey, signal) {
      if (!/^\d+$/.test(gbifKey)) throw new UpstreamError(UPSTREAM, `P846 holds GBIF backbone integer keys, got '${gbifKey}'`, false);
      const body = await call({ action: "query", list: "search", srsearch: `haswbstatement:P846=${gbifKey}`, srlimit: "2" }, signal);
      if (!isSearchResponse(body)) throw unexpected("search", isSearchResponse.errors);
      return body.query.search.map((hit) => hit.title);
    },

    async findImages(itemIds, signal) {
      if (itemIds.length === 0) return new Map();
      if (itemIds.length > MAX_ENTITIES_PER_CALL) throw new RangeError(`at most ${MAX_ENTITIES_PER_CALL} items per call, got ${itemIds.length}`);
      const body = await call({ action: "wbgetentities", ids: itemIds.join("|"), props: "claims" }, signal);
      if (!isEntitiesResponse(body)) throw unexpected("wbgetentities", isEntitiesResponse.errors);
      const images = new Map<string, WikidataItemImage>();
      for (const requested of itemIds) {
        const entity = body.entities[requested];
        if (!entity || entity.missing !== undefined) {
          images.set(requested, { kind: "missing" });
          continue;
        }
        const file = pickImage(entity.claims?.P18 ?? []);
        images.set(requested, file ? { kind: "image", itemId: entity.id, file } : { kind: "no_image", itemId: entity.id });
      }
      return images;
    },
  };
}

/**
 * The image among P18 statements, by Wikibase's "best rank" rule: the preferred statements if
 * there are any, else the normal ones; deprecated ones never. A best statement saying "no value"
 * or "unknown value" has no file, so it yields none.
 */
export function pickImage(statements: readonly WikidataStatement[]): string | undefined {
  const preferred = statements.filter((statement) => statement.rank === "preferred");
  const best = preferred.length > 0 ? preferred : statements.filter((statement) => statement.rank === "normal");
  for (const { mainsnak } of best) {
    if (mainsnak.snaktype === "value" && typeof mainsnak.datavalue?.value === "string" && mainsnak.datavalue.value !== "") {
      return mainsnak.datavalue.value;
    }
  }
  return undefined;
}

/**
 * A stable URL of a Commons file at a standard thumbnail width. Special:FilePath redirects to the
 * thumbnail wherever Commons serves it now: hand-built upload.wikimedia.org paths (md5 directories)
 * are "private, not a public API" (T66214) and the thumbnail host is moving to thumb.wikimedia.org.
 * It also serves the original when the file is narrower than the width asked for.
 */
export function commonsThumbnailUrl(file: string, width: number): string {
  const name = file.trim().replace(/^File:/i, "").replaceAll(" ", "_");
  return `${COMMONS}/wiki/Special:FilePath/${encodeURIComponent(name)}?width=${width}`;
}

function unexpected(what: string, errors: typeof isSearchResponse.errors): UpstreamError {
  return new UpstreamError(UPSTREAM, `unexpected ${what} response: ${ajv.errorsText(errors, { dataVar: "response" })}`, false);
}
