import type { Config } from "../config.ts";
import { makeGbifClient, type GbifClient } from "./gbif.ts";
import { makeIucnClient, type IucnClient } from "./iucn.ts";
import { makeWikidataClient, type WikidataClient } from "./wikidata.ts";

/** The upstream API clients handed to every task. Made once per process so their concurrency limits hold process-wide. */
export interface UpstreamClients {
  gbif: GbifClient;
  wikidata: WikidataClient;
  iucn: IucnClient;
}

export function makeUpstreamClients(config: Config): UpstreamClients {
  return { gbif: makeGbifClient(config.gbif), wikidata: makeWikidataClient(config.wikidata), iucn: makeIucnClient(config.iucn) };
}
