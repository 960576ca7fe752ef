import { describe, expect, test } from "vitest";
import { parseConfig } from "../../src/config.ts";
import { pickGlobalAssessment } from "../../src/upstream/iucn.ts";
import { assessmentSummary, IUCN_REGIONS } from "../../src/demo/fake-iucn.ts";

const { GLOBAL, EUROPE } = IUCN_REGIONS;

describe("pickGlobalAssessment", () => {
  test("takes the latest assessment with the global scope, never a regional one", () => {
    const picked = pickGlobalAssessment([
      assessmentSummary({ id: 3, year: 2023, latest: true, code: "VU", scopes: [EUROPE] }),
      assessmentSummary({ id: 1, year: 2010, latest: false, code: "EN", scopes: [GLOBAL] }),
      assessmentSummary({ id: 2, year: 2018, latest: true, code: "LC", scopes: [GLOBAL] }),
    ]);
    expect(picked?.assessment_id).toBe(2);
  });

  test("an assessment scoped both global and regional counts as global", () => {
    expect(pickGlobalAssessment([assessmentSummary({ id: 5, year: 2020, latest: true, scopes: [EUROPE, GLOBAL] })])?.assessment_id).toBe(5);
  });

  test("nothing when only regional or superseded assessments exist", () => {
    expect(pickGlobalAssessment([assessmentSummary({ id: 4, year: 2024, latest: true, scopes: [EUROPE] }), assessmentSummary({ id: 1, year: 2010, latest: false })])).toBeUndefined();
  });
});

describe("IUCN settings", () => {
  test("the token is optional and a secret", () => {
    expect(parseConfig({}).iucn.token).toBeUndefined();
    expect(parseConfig({ IUCN_API_TOKEN: "" }).iucn.token).toBeUndefined();
    expect(parseConfig({ IUCN_API_TOKEN: "abc" }).iucn).toMatchObject({ token: "abc", baseUrl: "https://api.iucnredlist.org", minIntervalMs: 500 });
  });
});
