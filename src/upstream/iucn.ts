/**
 * IUCN Red List API v4 client: the latest global assessment of a species. See
 * ../shared/UPSTREAM_APIS.md §7. The token travels in the Authorization header only (never in a
 * URL, a log line or an error). Calls are paced: one at a time per process, at least
 * IUCN_MIN_INTERVAL_MS apart, and a 429's Retry-After holds back the calls after it.
 */
import { Ajv } from "ajv";
import Type, { type Static } from "typebox";
import { PermanentJobError } from "../permanent-failure.ts";
import { compileOnFirstUse } from "./response-schema.ts";
import { fetchJson, UpstreamError } from "./http.ts";
import { makePacer } from "./pacing.ts";

const UPSTREAM = "IUCN";
/** Scope code of global assessments; the others ("2" Europe, "4" Mediterranean, ...) are regional. */
export const GLOBAL_SCOPE_CODE = "1";

const Assessment = Type.Object({
  assessment_id: Type.Integer(),
  year_published: Type.Optional(Type.Union([Type.String(), Type.Integer()])),
  latest: Type.Boolean(),
  // Only in replies since 2025; older ones need GET /assessment/{id}.
  red_list_category_code: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  scopes: Type.Array(Type.Object({ code: Type.String() })),
});
const TaxonResponse = Type.Object({ assessments: Type.Array(Assessment) });
const AssessmentResponse = Type.Object({
  red_list_category: Type.Object({ code: Type.String() }),
  year_published: Type.Optional(Type.Union([Type.String(), Type.Integer()])),
});
export type IucnAssessmentSummary = Static<typeof Assessment>;

const ajv = new Ajv({ allErrors: false, strict: false });
const isTaxonResponse = compileOnFirstUse<Static<typeof TaxonResponse>>(ajv, TaxonResponse);
const isAssessmentResponse = compileOnFirstUse<Static<typeof AssessmentResponse>>(ajv, AssessmentResponse);
const isNotFoundResponse = compileOnFirstUse(ajv, Type.Object({ error: Type.Literal("Not found") }));

/** The token is missing or IUCN refused it: no call can succeed until the setting is fixed, so the job fails permanently. */
export class IucnConfigurationError extends PermanentJobError {
  override name = "IucnConfigurationError";
}

export type IucnConservationStatus =
  | { kind: "assessed"; assessmentId: number; year: number | null; category: string }
  /** IUCN knows the species, but none of its latest assessments is global. */
  | { kind: "no_global_assessment" }
  /** IUCN does not know the name (404). */
  | { kind: "not_found" };

export interface IucnClientOptions {
  baseUrl: string;
  token: string | undefined;
  timeoutMs: number;
  minIntervalMs: number;
  userAgent: string;
}

export interface IucnClient {
  /** False when IUCN_API_TOKEN is unset: callers fail before any call. */
  readonly hasToken: boolean;
  findGlobalStatus(species: { genus: string; epithet: string }, signal?: AbortSignal): Promise<IucnConservationStatus>;
}

export function makeIucnClient(options: IucnClientOptions): IucnClient {
  // A Retry-After longer than this defers the job (attempt given back) instead of holding the queue.
  const pacer = makePacer({ upstream: UPSTREAM, minIntervalMs: options.minIntervalMs, maxWaitMs: 10_000 });

  async function get(path: string, query: Record<string, string>, signal: AbortSignal | undefined) {
    const { token } = options;
    if (!token) throw missingToken();
    const url = new URL(`/api/v4${path}`, options.baseUrl);
    for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
    return pacer.run(async () => {
      try {
        // rredlist, whose recordings the fixtures are, sends the bare token.
        return await fetchJson(url, {
          upstream: UPSTREAM,
          userAgent: options.userAgent,
          timeoutMs: options.timeoutMs,
          headers: { authorization: token },
          acceptStatuses: [404],
          signal,
        });
      } catch (error) {
        if (error instanceof UpstreamError && (error.status === 401 || error.status === 403)) {
          throw new IucnConfigurationError(`IUCN refused the API token (HTTP ${error.status}): check IUCN_API_TOKEN`, { cause: error });
        }
        throw error;
      }
    }, signal);
  }

  return {
    hasToken: Boolean(options.token),
    async findGlobalStatus({ genus, epithet }, signal) {
      const { status, body } = await get("/taxa/scientific_name", { genus_name: genus, species_name: epithet }, signal);
      if (status === 404) {
        // IUCN's own {"error":"Not found"}; any other 404 (a wrong base URL) must not be recorded as "not assessed".
        if (isNotFoundResponse(body)) return { kind: "not_found" };
        throw new UpstreamError(UPSTREAM, "HTTP 404 from /taxa/scientific_name that is not IUCN's \"Not found\"", false, 404);
      }
      if (!isTaxonResponse(body)) throw unexpected("taxa/scientific_name", isTaxonResponse.errors);
      const assessment = pickGlobalAssessment(body.assessments);
      if (!assessment) return { kind: "no_global_assessment" };
      const year = parseYear(assessment.year_published);
      if (assessment.red_list_category_code) {
        return { kind: "assessed", assessmentId: assessment.assessment_id, year, category: assessment.red_list_category_code };
      }
      const detail = await get(`/assessment/${assessment.assessment_id}`, {}, signal);
      if (detail.status === 404) {
        throw new UpstreamError(UPSTREAM, `assessment ${assessment.assessment_id} is listed for the species but not found`, false, 404);
      }
      if (!isAssessmentResponse(detail.body)) throw unexpected("assessment", isAssessmentResponse.errors);
      return {
        kind: "assessed",
        assessmentId: assessment.assessment_id,
        year: year ?? parseYear(detail.body.year_published),
        category: detail.body.red_list_category.code,
      };
    },
  };
}

/** The latest global assessment; regional ones can be `latest` too and are ignored. Newest first on ties. */
export function pickGlobalAssessment(assessments: readonly IucnAssessmentSummary[]): IucnAssessmentSummary | undefined {
  return assessments
    .filter((assessment) => assessment.latest && assessment.scopes.some((scope) => scope.code === GLOBAL_SCOPE_CODE))
    .sort((a, b) => (parseYear(b.year_published) ?? 0) - (parseYear(a.year_published) ?? 0) || b.assessment_id - a.assessment_id)[0];
}

function parseYear(value: string | number | undefined): number | null {
  const year = Number(value);
  return Number.isInteger(year) && year > 0 ? year : null;
}

function missingToken(): IucnConfigurationError {
  return new IucnConfigurationError("IUCN_API_TOKEN is not set: the IUCN Red List API needs a token (api.iucnredlist.org/users/sign_up)");
}

function unexpected(what: string, errors: typeof isTaxonResponse.errors): UpstreamError {
  return new UpstreamError(UPSTREAM, `unexpected ${what} response: ${ajv.errorsText(errors, { dataVar: "response" })}`, false);
}
