#!/usr/bin/env node
// Runs the TypeScript source in a checkout (Node strips the types) and the compiled build in the image.
import "./check-node.cjs";
import { existsSync } from "node:fs";

const source = new URL("../src/cli.ts", import.meta.url);
const built = new URL("../dist/src/cli.js", import.meta.url);
const { main } = await import(existsSync(source) ? source.href : built.href);
await main();
