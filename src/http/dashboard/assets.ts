/**
 * The dashboard's stylesheet, script and icon, served by the service itself (no CDN: it works offline
 * and behind `gcloud run services proxy`). They are read once at start-up; their URLs carry a
 * digest of their content, so browsers may keep them for good and still never see a stale one.
 * `npm run build` copies assets/ beside the compiled module.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";

export interface Asset {
  /** e.g. /dashboard/assets/dashboard.css?v=1a2b3c4d5e6f */
  url: string;
  contentType: string;
  body: Buffer;
}

const CONTENT_TYPES: Record<string, string> = {
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
};

function loadAsset(file: string): Asset {
  const body = readFileSync(path.join(import.meta.dirname, "assets", file));
  const digest = createHash("sha256").update(body).digest("hex").slice(0, 12);
  return { url: `/dashboard/assets/${file}?v=${digest}`, contentType: CONTENT_TYPES[path.extname(file)]!, body };
}

export const ASSETS = {
  "dashboard.css": loadAsset("dashboard.css"),
  "live.js": loadAsset("live.js"),
  // The page's icon, and the same one as an ICO for /favicon.ico (what a browser asks for without a <link>).
  "favicon.svg": loadAsset("favicon.svg"),
  "favicon.ico": loadAsset("favicon.ico"),
} as const;

export type AssetName = keyof typeof ASSETS;
