// Loaded first (`node --require ./bin/check-node.cjs`, and by bin/observing-jobs.js) so that an
// unsupported Node says so in one line instead of failing on the first `.ts` file. Plain CommonJS
// with no syntax newer than Node 12, so that even an old Node gets this far.
"use strict";
const { engines } = require("../package.json");

const minimum = engines.node.replace(/^>=\s*/, "").split(".").map(Number);
const found = process.versions.node.split(".").map(Number);
const tooOld = found[0] < minimum[0] || (found[0] === minimum[0] && found[1] < minimum[1]);
if (tooOld) {
  process.stderr.write(`observing-jobs needs Node >= ${minimum[0]}.${minimum[1]}, found ${process.version}; see .nvmrc\n`);
  process.exit(1);
}
