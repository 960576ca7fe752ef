/**
 * A fake IUCN Red List API v4: a real HTTP server on 127.0.0.1 answering
 * `GET /api/v4/taxa/scientific_name?genus_name=&species_name=` and `GET /api/v4/assessment/{id}`
 * in the shapes of ../shared/UPSTREAM_APIS.md §7. A missing or wrong token gets the recorded 401
 * body, an unknown name the recorded 404 body. The species bodies are reconstructed in the
 * documented shape (no 200 body was recorded): category codes are real, ids are illustrative.
 * It records each request's arrival time and the most requests ever in flight.
 */
import type http from "node:http";
import { FakeUpstream, readFixture, type FakeBehaviour } from "./loopback.ts";

const GLOBAL = { code: "1", description: { en: "Global" } };
const EUROPE = { code: "2", description: { en: "Europe" } };

/** An assessment summary as the 2025 API returns it; `code: undefined` gives the 2024 shape without the category. */
export function assessmentSummary(fields: { id: number; year: number; latest: boolean; code?: string; scopes?: Array<typeof GLOBAL>; name?: string }) {
  return {
    assessment_id: fields.id,
    sis_taxon_id: 1000,
    year_published: String(fields.year),
    latest: fields.latest,
    possibly_extinct: false,
    possibly_extinct_in_the_wild: false,
    ...(fields.code ? { red_list_category_code: fields.code } : {}),
    ...(fields.name ? { taxon_scientific_name: fields.name } : {}),
    url: `https://www.iucnredlist.org/species/1000/${fields.id}`,
    scopes: fields.scopes ?? [GLOBAL],
  };
}

/** A taxa/scientific_name reply for a binomial with these assessments. */
export function speciesReply(name: string, assessments: unknown[]) {
  const [genus, species] = name.split(" ");
  return {
    taxon: { sis_id: 1000, scientific_name: name, genus_name: genus, species_name: species, kingdom_name: "ANIMALIA", common_names: [], synonyms: [] },
    assessments,
    params: { genus_name: genus, species_name: species },
  };
}

export const IUCN_REGIONS = { GLOBAL, EUROPE };

export class FakeIucn extends FakeUpstream {
  /** The token the fake accepts, bare or as "Bearer <token>". */
  readonly token = "test-iucn-token";
  #species = new Map<string, unknown>();
  #assessments = new Map<string, unknown>();
  #scripted = new Map<string, FakeBehaviour[]>();

  constructor() {
    super(2);
    this.reset();
  }

  addSpecies(name: string, assessments: unknown[]): void {
    this.#species.set(name, speciesReply(name, assessments));
  }

  addAssessment(id: number, code: string, year: number): void {
    this.#assessments.set(String(id), {
      assessment_id: id,
      year_published: String(year),
      latest: true,
      red_list_category: { code, description: { en: code }, version: "3.1" },
      criteria: "",
      population_trend: { code: "2", description: { en: "Decreasing" } },
    });
  }

  /** The next answers for a name ("Genus species"), used up in order. */
  script(name: string, ...behaviours: FakeBehaviour[]): void {
    this.#scripted.set(name, [...(this.#scripted.get(name) ?? []), ...behaviours]);
  }

  reset(): void {
    this.requests.length = 0;
    this.#scripted.clear();
    this.#species.clear();
    this.#assessments.clear();
    this.maxInFlight = 0;
    // Puma concolor: global Least Concern (2015); the 2008 global assessment is no longer latest.
    this.addSpecies("Puma concolor", [
      assessmentSummary({ id: 50663430, year: 2015, latest: true, code: "LC", name: "Puma concolor" }),
      assessmentSummary({ id: 12345678, year: 2008, latest: false, code: "LC", name: "Puma concolor" }),
    ]);
  }

  /** The species names asked for, in order. */
  askedNames(): string[] {
    return this.requests.flatMap((r) => (r.path.endsWith("/taxa/scientific_name") ? [`${r.query.get("genus_name")} ${r.query.get("species_name")}`] : []));
  }

  protected answer(url: URL, request: http.IncomingMessage): FakeBehaviour {
    const name = `${url.searchParams.get("genus_name")} ${url.searchParams.get("species_name")}`;
    if (!this.#authorised(request.headers.authorization)) return { status: 401, body: readFixture("iucn-v4-401-unauthorized.json") };
    return this.#scripted.get(name)?.shift() ?? this.#answer(url, name);
  }

  #authorised(header: string | undefined): boolean {
    return header === this.token || header === `Bearer ${this.token}`;
  }

  #answer(url: URL, name: string): FakeBehaviour {
    const notFound = { status: 404, body: readFixture("iucn-v4-404-not-found.json") };
    if (url.pathname === "/api/v4/taxa/scientific_name") {
      const body = this.#species.get(name);
      return body ? { body } : notFound;
    }
    const assessment = /^\/api\/v4\/assessment\/(\d+)$/.exec(url.pathname)?.[1];
    const body = assessment ? this.#assessments.get(assessment) : undefined;
    return body ? { body } : notFound;
  }
}

export async function startFakeIucn(): Promise<FakeIucn> {
  return new FakeIucn().start();
}
