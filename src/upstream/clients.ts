import type { Config } from "../config.ts";
import { makeGbifClient, type GbifClient } from "./gbif.ts";

/** The upstream API clients handed to every task. Made once per process so their concurrency limits hold process-wide. */
export interface UpstreamClients {
  gbif: GbifClient;
}

export function makeUpstreamClients(config: Config): UpstreamClients {
  return { gbif: makeGbifClient(config.gbif) };
}
