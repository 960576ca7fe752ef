/**
 * What a GBIF match means for a taxa row. Pure: the task decides when to call GBIF, this decides
 * what gets recorded. A name GBIF cannot match is data (`no_match`); a match we must not trust
 * blindly (higher rank only, or a kingdom that contradicts the row's hint) is `needs_review`.
 */
import type { TaxonUpdate } from "../db/tables/taxa.ts";
import type { GbifMatch } from "../upstream/gbif.ts";

const NO_MATCH_TYPES = new Set(["NONE", "AMBIGUOUS", "UNSUPPORTED"]);
const CLASSIFICATION_RANKS = ["kingdom", "phylum", "class", "order", "family", "genus", "species"] as const;

export function interpretMatch(match: GbifMatch, kingdomHint: string | null, now: Date): TaxonUpdate {
  const base: TaxonUpdate = {
    match_type: match.matchType,
    confidence: match.confidence === null ? null : Math.round(match.confidence),
    gbif_checklist_key: match.checklistKey,
    resolved_at: now,
    last_error: null,
    updated_at: now,
  };
  const { usage } = match;
  if (!usage || NO_MATCH_TYPES.has(match.matchType)) {
    return {
      ...base,
      ...emptyMatch(),
      status: "no_match",
      resolution_note: match.note ?? `GBIF found no match (${match.matchType})`,
    };
  }

  const accepted = match.acceptedUsage ?? usage;
  const lineage = Object.fromEntries(
    CLASSIFICATION_RANKS.map((rank) => [rank, match.classification.find((entry) => entry.rank?.toLowerCase() === rank)?.name ?? null]),
  ) as Record<(typeof CLASSIFICATION_RANKS)[number], string | null>;

  const reviewReasons: string[] = [];
  if (match.matchType === "HIGHERRANK") {
    reviewReasons.push(`matched only at rank ${usage.rank ?? "unknown"} ('${usage.name}'), not the name itself`);
  }
  if (kingdomHint && lineage.kingdom && kingdomHint.trim().toLowerCase() !== lineage.kingdom.toLowerCase()) {
    reviewReasons.push(`kingdom hint '${kingdomHint}' contradicts GBIF's kingdom '${lineage.kingdom}'`);
  }

  return {
    ...base,
    status: reviewReasons.length > 0 ? "needs_review" : "resolved",
    gbif_usage_key: usage.key,
    gbif_accepted_usage_key: accepted.key,
    accepted_name: accepted.canonicalName ?? accepted.name,
    rank: usage.rank ?? null,
    usage_status: usage.status ?? null,
    ...lineage,
    resolution_note: reviewReasons.length > 0 ? reviewReasons.join("; ") : (match.note ?? null),
  };
}

function emptyMatch(): TaxonUpdate {
  return {
    gbif_usage_key: null,
    gbif_accepted_usage_key: null,
    accepted_name: null,
    rank: null,
    usage_status: null,
    ...Object.fromEntries(CLASSIFICATION_RANKS.map((rank) => [rank, null])),
  };
}
