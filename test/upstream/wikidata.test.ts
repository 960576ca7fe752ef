import { describe, expect, test } from "vitest";
import { parseConfig } from "../../src/config.ts";
import { commonsThumbnailUrl, pickImage } from "../../src/upstream/wikidata.ts";
import { imageStatement } from "../../src/demo/fake-wikidata.ts";

describe("pickImage follows Wikibase's best-rank rule", () => {
  test("preferred beats normal, deprecated never counts, and no statements means no image", () => {
    expect(pickImage([imageStatement("Normal.jpg"), imageStatement("Preferred.jpg", "preferred")])).toBe("Preferred.jpg");
    expect(pickImage([imageStatement("Old.jpg", "deprecated"), imageStatement("Normal.jpg")])).toBe("Normal.jpg");
    expect(pickImage([imageStatement("Old.jpg", "deprecated")])).toBeUndefined();
    expect(pickImage([])).toBeUndefined();
  });

  test("'no value' and 'unknown value' carry no file", () => {
    expect(pickImage([imageStatement(null, "normal", "novalue")])).toBeUndefined();
    expect(pickImage([imageStatement(null, "normal", "somevalue"), imageStatement("Second.jpg")])).toBe("Second.jpg");
  });
});

describe("commonsThumbnailUrl", () => {
  test("builds the Special:FilePath URL with underscores, percent-encoding and the width", () => {
    expect(commonsThumbnailUrl("Junior-Jaguar-Belize-Zoo.jpg", 330)).toBe("https://commons.wikimedia.org/wiki/Special:FilePath/Junior-Jaguar-Belize-Zoo.jpg?width=330");
    expect(commonsThumbnailUrl("Juan Gris - Nature morte à la nappe à carreaux.jpg", 500)).toBe(
      "https://commons.wikimedia.org/wiki/Special:FilePath/Juan_Gris_-_Nature_morte_%C3%A0_la_nappe_%C3%A0_carreaux.jpg?width=500",
    );
    expect(commonsThumbnailUrl("Flag of Jordan.svg", 120)).toBe("https://commons.wikimedia.org/wiki/Special:FilePath/Flag_of_Jordan.svg?width=120");
  });

  test("COMMONS_THUMBNAIL_WIDTH must be a width Wikimedia serves", () => {
    expect(parseConfig({ COMMONS_THUMBNAIL_WIDTH: "500" }).wikidata.thumbnailWidth).toBe(500);
    expect(parseConfig({}).wikidata.thumbnailWidth).toBe(330);
    expect(() => parseConfig({ COMMONS_THUMBNAIL_WIDTH: "300" })).toThrow(
      /COMMONS_THUMBNAIL_WIDTH must be a standard Wikimedia thumbnail width \(20, 40, 60, 120, 250, 330, 500, 960, 1280, 1920, 3840\), got "300"/,
    );
  });

  test("a Wikimedia User-Agent needs contact details in parentheses", () => {
    expect(() => parseConfig({ WIKIDATA_USER_AGENT: "python-requests/2.31" })).toThrow(/WIKIDATA_USER_AGENT/);
  });
});
