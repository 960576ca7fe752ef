/**
 * 6. resolve_taxa against a fake GBIF (src/demo/fake-gbif.ts) that answers every match after
 * 50 ms: taxa resolved per second by the service at its default concurrency (GBIF_CONCURRENCY 2, the
 * task's cap of 2), from POST /jobs/resolve_taxa (a sweep that fans out into batches) until every
 * row is settled. There is no raw counterpart; the bound is GBIF_CONCURRENCY calls per 50 ms.
 */
import pg from "pg";
import { API_TOKEN, withSubject, type BenchContext } from "../lib/context.ts";
import type { Measure } from "../lib/report.ts";
import { KNOWN_NAMES, startFakeGbif } from "../../src/demo/fake-gbif.ts";

const SCENARIO = "6. resolve_taxa against a fake GBIF answering in 50 ms";

export async function resolveTaxa(context: BenchContext): Promise<Measure> {
  const { plan } = context;
  const gbif = await startFakeGbif();
  const rates: number[] = [];
  try {
    for (let round = 0; round < plan.resolveRounds; round++) {
      gbif.reset();
      const names = Array.from({ length: plan.taxa }, (_, index) => `Benchmark species ${index}`);
      for (const name of names) gbif.script(name, { body: KNOWN_NAMES["Puma concolor"], delayMs: plan.gbifDelayMs });
      rates.push(
        await withSubject(context, "service", "resolve_taxa", { gbifBaseUrl: gbif.url }, async (subject, database) => {
          const pool = new pg.Pool({ connectionString: database.url, max: 1 });
          try {
            await pool.query("insert into taxa (scientific_name) select unnest($1::text[])", [names]);
            const began = performance.now();
            const response = await fetch(`${subject.url}/jobs/resolve_taxa`, {
              method: "POST",
              headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
              body: "{}",
            });
            if (response.status !== 202) throw new Error(`POST /jobs/resolve_taxa answered ${response.status}`);
            const deadline = began + 120_000;
            for (;;) {
              const { rows } = await pool.query<{ left: number }>("select count(*)::int as left from taxa where status = 'unresolved'");
              if (rows[0]!.left === 0) break;
              if (performance.now() > deadline) throw new Error(`${rows[0]!.left} taxa still unresolved after 120 s`);
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
            const rate = plan.taxa / ((performance.now() - began) / 1000);
            context.log(`resolve_taxa round ${round + 1}: ${rate.toFixed(1)} taxa/s`);
            return rate;
          } finally {
            await pool.end();
          }
        }),
      );
    }
  } finally {
    await gbif.stop();
  }
  return {
    id: "resolveTaxa.rate",
    scenario: SCENARIO,
    label: `${plan.taxa} taxa, default concurrency`,
    unit: "taxa/s",
    raw: null,
    service: rates,
    target: null,
    note: `bound: GBIF_CONCURRENCY (2) calls per ${plan.gbifDelayMs} ms = ${2000 / plan.gbifDelayMs} taxa/s`,
  };
}
