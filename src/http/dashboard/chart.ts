/**
 * The overview's "last hour" chart: inline SVG bars (no script, no library), with the same
 * figures as a table for screen readers and anyone who prefers numbers.
 */
import type { OutcomeBucket } from "./queries/activity.ts";
import { html, type Html } from "./html.ts";

const WIDTH = 900;
const HEIGHT = 180;
const AXIS = 20;

function clock(date: Date): string {
  return date.toISOString().slice(11, 16);
}

export function outcomesChart(buckets: OutcomeBucket[]): Html {
  const succeeded = buckets.reduce((sum, bucket) => sum + bucket.succeeded, 0);
  const failed = buckets.reduce((sum, bucket) => sum + bucket.failed, 0);
  const highest = Math.max(1, ...buckets.map((bucket) => bucket.succeeded + bucket.failed));
  const slot = WIDTH / Math.max(1, buckets.length);
  const barWidth = Math.max(2, slot * 0.7);
  const plot = HEIGHT - AXIS;
  const bars = buckets.map((bucket, index) => {
    const x = index * slot + (slot - barWidth) / 2;
    const okHeight = (bucket.succeeded / highest) * plot;
    const failHeight = (bucket.failed / highest) * plot;
    const label = `${clock(bucket.start)} UTC: ${bucket.succeeded} succeeded, ${bucket.failed} failed`;
    return html`<g><title>${label}</title>
      <rect class="bar-ok" x="${x.toFixed(1)}" y="${(plot - okHeight).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${okHeight.toFixed(1)}"></rect>
      <rect class="bar-failed" x="${x.toFixed(1)}" y="${(plot - okHeight - failHeight).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${failHeight.toFixed(1)}"></rect>
    </g>`;
  });
  const first = buckets[0];
  const second = buckets[1];
  const last = buckets.at(-1);
  const end = last && first && second ? new Date(last.start.getTime() + second.start.getTime() - first.start.getTime()) : last?.start;
  const axis =
    first && end
      ? html`<text class="axis" x="0" y="${HEIGHT - 4}">${clock(first.start)}</text>
        <text class="axis" x="${WIDTH}" y="${HEIGHT - 4}" text-anchor="end">${clock(end)} UTC</text>`
      : "";
  return html`<figure class="chart">
    <svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="chart-summary">
      <line class="baseline" x1="0" y1="${plot}" x2="${WIDTH}" y2="${plot}"></line>
      ${bars}
      ${axis}
    </svg>
    <figcaption id="chart-summary">
      Last hour, per 5 minutes: <span class="key key-ok">${succeeded} succeeded</span>,
      <span class="key key-failed">${failed} failed attempt${failed === 1 ? "" : "s"}</span> (highest bar: ${highest}).
    </figcaption>
    <details><summary>As a table</summary>
      <table><thead><tr><th scope="col">From (UTC)</th><th scope="col">Succeeded</th><th scope="col">Failed attempts</th></tr></thead>
      <tbody>${buckets.map((bucket) => html`<tr><td>${clock(bucket.start)}</td><td>${bucket.succeeded}</td><td>${bucket.failed}</td></tr>`)}</tbody></table>
    </details>
  </figure>`;
}
