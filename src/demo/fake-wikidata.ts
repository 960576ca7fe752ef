/**
 * A fake Wikidata: a real HTTP server on 127.0.0.1 answering `GET /w/api.php` in the shapes of
 * ../shared/UPSTREAM_APIS.md §5: `action=query&list=search` with `haswbstatement:P846=<key>`,
 * and `action=wbgetentities` (missing items, redirects of merged items). Q35255 (Puma concolor,
 * P846 2435099) answers from the recorded bodies; tests add items. Like Wikimedia it refuses a
 * User-Agent without contact details, and it records how many requests were ever in flight.
 */
import type http from "node:http";
import { FakeUpstream, readFixture, type FakeBehaviour } from "./loopback.ts";

/** A P18 statement as wbgetentities returns it. */
export function imageStatement(file: string | null, rank: "preferred" | "normal" | "deprecated" = "normal", snaktype = file ? "value" : "novalue") {
  return {
    mainsnak: {
      snaktype,
      property: "P18",
      ...(file && snaktype === "value" ? { datavalue: { value: file, type: "string" } } : {}),
      datatype: "commonsMedia",
    },
    type: "statement",
    id: `Q$${Math.random().toString(16).slice(2)}`,
    rank,
  };
}

/** An item entity carrying P846 and the given P18 statements (none: no P18 claim at all). */
export function itemEntity(id: string, gbifKey: string, images: unknown[] = []) {
  const p846 = {
    mainsnak: { snaktype: "value", property: "P846", datavalue: { value: gbifKey, type: "string" }, datatype: "external-id" },
    type: "statement",
    id: `${id}$p846`,
    rank: "normal",
  };
  return { type: "item", id, title: id, ns: 0, claims: { P846: [p846], ...(images.length > 0 ? { P18: images } : {}) } };
}

const RECORDED_SEARCH = readFixture("wikidata-search-haswbstatement-P846-2435099.json") as { query: { search: Array<Record<string, unknown>> } };
const RECORDED_ENTITY = (readFixture("wikidata-wbgetentities-Q35255-claims.json") as { entities: Record<string, unknown> }).entities.Q35255;

export class FakeWikidata extends FakeUpstream {
  #entities = new Map<string, unknown>();
  #redirects = new Map<string, string>();
  /** GBIF key → item ids whose P846 holds it (the search index). */
  #index = new Map<string, string[]>();
  #scripted: FakeBehaviour[] = [];

  constructor() {
    // Long enough for a second, parallel request to show up in maxInFlight if a client sent one.
    super(5);
    this.reset();
  }

  /** Adds an item, found by the search for each GBIF key in its P846 claims. */
  addItem(entity: ReturnType<typeof itemEntity>): void {
    this.#entities.set(entity.id, entity);
    for (const statement of entity.claims.P846) {
      const key = statement.mainsnak.datavalue.value;
      this.#index.set(key, [...(this.#index.get(key) ?? []), entity.id]);
    }
  }

  /** `from` was merged into `to`: the search index still names `from`, wbgetentities follows the redirect. */
  addRedirect(from: string, gbifKey: string, to: string): void {
    this.#redirects.set(from, to);
    this.#index.set(gbifKey, [...(this.#index.get(gbifKey) ?? []), from]);
  }

  /** Names an item in the search index that no longer exists (a deletion the index has not caught up with). */
  addStaleSearchHit(gbifKey: string, itemId: string): void {
    this.#index.set(gbifKey, [...(this.#index.get(gbifKey) ?? []), itemId]);
  }

  /** The next answers to any request, used up in order. */
  script(...behaviours: FakeBehaviour[]): void {
    this.#scripted.push(...behaviours);
  }

  reset(): void {
    this.requests.length = 0;
    this.#scripted.length = 0;
    this.#entities.clear();
    this.#redirects.clear();
    this.#index.clear();
    this.#entities.set("Q35255", RECORDED_ENTITY);
    this.#index.set("2435099", ["Q35255"]);
    this.maxInFlight = 0;
  }

  /** The GBIF keys searched for, in order. */
  searchedKeys(): string[] {
    return this.requests.flatMap((r) => (r.query.get("list") === "search" ? [(r.query.get("srsearch") ?? "").replace("haswbstatement:P846=", "")] : []));
  }

  /** The ids asked of wbgetentities, call by call. */
  entityRequests(): string[][] {
    return this.requests.flatMap((r) => (r.query.get("action") === "wbgetentities" ? [(r.query.get("ids") ?? "").split("|")] : []));
  }

  protected answer(url: URL, request: http.IncomingMessage): FakeBehaviour {
    return this.#scripted.shift() ?? this.#answer(url, request.headers);
  }

  #answer(url: URL, headers: http.IncomingHttpHeaders): FakeBehaviour {
    // Wikimedia's User-Agent policy: generic agents without contact details are blocked.
    if (!/\(.+\)/.test(headers["user-agent"] ?? "")) {
      return { status: 403, body: "Please set a user-agent and respect our robot policy https://w.wiki/4wJS.", headers: { "content-type": "text/plain" } };
    }
    const query = url.searchParams;
    if (url.pathname !== "/w/api.php" || query.get("format") !== "json") {
      return { status: 404, body: "Not Found", headers: { "content-type": "text/html" } };
    }
    if (query.get("action") === "query" && query.get("list") === "search") {
      const key = /^haswbstatement:P846=(\d+)$/.exec(query.get("srsearch") ?? "")?.[1];
      if (!key) return { body: { error: { code: "badvalue", info: "Unrecognized search" } } };
      const hits = (this.#index.get(key) ?? []).slice(0, Number(query.get("srlimit") ?? 10));
      return {
        body: {
          batchcomplete: "",
          query: {
            searchinfo: { totalhits: this.#index.get(key)?.length ?? 0 },
            search: hits.map((title) => RECORDED_SEARCH.query.search.find((hit) => hit.title === title) ?? { ns: 0, title, pageid: 1, size: 1, wordcount: 0, snippet: "", timestamp: "2026-10-30T08:14:52Z" }),
          },
        },
      };
    }
    if (query.get("action") === "wbgetentities") {
      const ids = (query.get("ids") ?? "").split("|").filter(Boolean);
      if (ids.length === 0 || ids.length > 50) return { body: { error: { code: "toomanyvalues", info: "Too many values supplied for parameter \"ids\". The limit is 50." } } };
      const entities = Object.fromEntries(
        ids.map((id) => {
          const target = this.#redirects.get(id);
          const entity = this.#entities.get(target ?? id);
          if (!entity) return [id, { id, missing: "" }];
          return [id, target ? { ...(entity as object), redirects: { from: id, to: target } } : entity];
        }),
      );
      return { body: { entities, success: 1 } };
    }
    return { body: { error: { code: "badvalue", info: `Unrecognized value for parameter "action"` } } };
  }
}

export async function startFakeWikidata(): Promise<FakeWikidata> {
  return new FakeWikidata().start();
}
