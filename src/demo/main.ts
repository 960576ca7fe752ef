/**
 * `npm run demo`: the service working offline, for a first look. It starts the fake GBIF, Wikidata
 * and IUCN servers the tests use (answering from recorded bodies), runs the service against them on
 * an embedded PostgreSQL of its own (`.data/demo-postgres`), puts a few example taxa in `taxa`, and
 * prints a development token and what to try. `npm run demo -- taxa` prints the example rows.
 *
 * Development only: it refuses NODE_ENV=production, and listens on 127.0.0.1 unless HOST says otherwise.
 */
import { ConfigError, loadConfig, type Config } from "../config.ts";
import { connectDatabase } from "../db/connect.ts";
import type { Db } from "../db/database.ts";
import { exitAfterLogs, makeLogger } from "../observability/logger.ts";
import { logStartFailure, startService } from "../service.ts";
import { stopOnSignals } from "../signals.ts";
import { startFakeGbif } from "./fake-gbif.ts";
import { startFakeIucn } from "./fake-iucn.ts";
import { startFakeWikidata } from "./fake-wikidata.ts";

/** A development credential for a service on 127.0.0.1 serving made-up data (the README uses it). */
const DEMO_TOKEN = "demo-token-0123456789";

/** Names the fake GBIF knows, chosen to show each outcome of a match. */
const EXAMPLE_TAXA = [
  { scientific_name: "Puma concolor", kingdom_hint: "Animalia" }, // exact
  { scientific_name: "Helianthus annuus", kingdom_hint: "Plantae" }, // exact
  { scientific_name: "Felis concolor", kingdom_hint: "Animalia" }, // a synonym of Puma concolor
  { scientific_name: "Puma concuolor", kingdom_hint: "Animalia" }, // a misspelling: fuzzy
  { scientific_name: "Calopteryx", kingdom_hint: "Animalia" }, // a genus only: higher rank
  { scientific_name: "Fake species", kingdom_hint: null }, // no match
];

type Upstreams = { gbif: string; wikidata: string; iucn: string; iucnToken: string };

function demoConfig(upstreams: Upstreams | null): Config {
  return loadConfig((environment) => {
    if (environment.NODE_ENV === "production") throw new ConfigError(["npm run demo is for development: unset NODE_ENV=production"]);
    return {
      ...environment,
      // Its own database: the example rows stay out of the development one.
      DATABASE_URL: undefined,
      EMBEDDED_POSTGRES_DIR: environment.EMBEDDED_POSTGRES_DIR || ".data/demo-postgres",
      EMBEDDED_POSTGRES_PORT: environment.EMBEDDED_POSTGRES_PORT || "54339",
      HOST: environment.HOST || "127.0.0.1",
      API_TOKENS: environment.API_TOKENS || DEMO_TOKEN,
      ...(upstreams
        ? { GBIF_BASE_URL: upstreams.gbif, WIKIDATA_BASE_URL: upstreams.wikidata, IUCN_BASE_URL: upstreams.iucn, IUCN_API_TOKEN: upstreams.iucnToken }
        : {}),
    };
  });
}

/** Adds the example taxa that are not there yet (by name), so a restarted demo keeps its rows. */
async function seedExampleTaxa(db: Db): Promise<number> {
  const present = new Set((await db.selectFrom("taxa").select("scientific_name").execute()).map((row) => row.scientific_name));
  const missing = EXAMPLE_TAXA.filter((taxon) => !present.has(taxon.scientific_name));
  if (missing.length > 0) await db.insertInto("taxa").values(missing).execute();
  return missing.length;
}

async function runDemo(): Promise<void> {
  const [gbif, wikidata, iucn] = await Promise.all([startFakeGbif(), startFakeWikidata(), startFakeIucn()]);
  const stopFakes = () => Promise.all([gbif.stop(), wikidata.stop(), iucn.stop()]).then(() => {});
  let config: Config;
  try {
    config = demoConfig({ gbif: gbif.url, wikidata: wikidata.url, iucn: iucn.url, iucnToken: iucn.token });
  } catch (error) {
    await stopFakes();
    throw error;
  }
  const logger = makeLogger(config.log);
  try {
    const starting = startService(config, logger);
    stopOnSignals(starting, config, logger, stopFakes);
    const service = await starting;
    const added = await seedExampleTaxa(service.database.db);
    const [token] = config.auth.tokens;
    process.stdout.write(
      [
        "",
        `observing-jobs demo: offline, with fake GBIF, Wikidata and IUCN servers; ${added > 0 ? `added ${added}` : "kept the"} example taxa`,
        `  token:      ${token}`,
        `  dashboard:  ${service.url}/dashboard  (sign in with the token)`,
        `  try:        curl -s -X POST ${service.url}/jobs/resolve_taxa -H "Authorization: Bearer ${token}" -H 'Content-Type: application/json' -d '{}'`,
        `  the rows:   npm run demo -- taxa`,
        `  stop:       Ctrl-C`,
        "",
        "",
      ].join("\n"),
    );
  } catch (error) {
    logStartFailure(logger, error, "the demo");
    await stopFakes();
    exitAfterLogs(logger, 1);
  }
}

/** Prints the example rows as the demo's jobs left them. */
async function printTaxa(): Promise<void> {
  const config = demoConfig(null);
  const database = await connectDatabase(config, makeLogger({ ...config.log, level: "warn" }), 2);
  try {
    const rows = await database.db
      .selectFrom("taxa")
      .select(["id", "scientific_name", "status", "accepted_name", "rank", "match_type", "iucn_category", "thumbnail_url"])
      .orderBy("id")
      .execute();
    const table = [["id", "scientific name", "status", "accepted name", "rank", "match", "IUCN", "thumbnail"]].concat(
      rows.map((row) => [
        String(row.id),
        row.scientific_name,
        row.status,
        row.accepted_name ?? "",
        row.rank ?? "",
        row.match_type ?? "",
        row.iucn_category ?? "",
        row.thumbnail_url ? "yes" : "",
      ]),
    );
    const widths = table[0]!.map((_, column) => Math.max(...table.map((line) => line[column]!.length)));
    process.stdout.write(table.map((line) => line.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd()).join("\n") + "\n");
  } finally {
    await database.close();
  }
}

const [command, ...rest] = process.argv.slice(2);
try {
  if (command === undefined) await runDemo();
  else if (command === "taxa" && rest.length === 0) await printTaxa();
  else {
    process.stderr.write(`usage: npm run demo [-- taxa]  (unknown argument '${[command, ...rest].join(" ")}')\n`);
    process.exitCode = 2;
  }
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exitCode = 1;
}
