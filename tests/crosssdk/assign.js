// Assign users with GrowthBook's JavaScript SDK from a stopline-published payload.
// usage: node assign.js PAYLOAD.json USERS.json  (USERS: [[id, [groups...]], ...]) → {key: [branch|null, ...]}
"use strict";
const fs = require("fs");
const { GrowthBook } = require("@growthbook/growthbook");

const payload = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const users = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const keys = Object.keys(payload.features);
const out = Object.fromEntries(keys.map((k) => [k, []]));
const gb = new GrowthBook({ features: payload.features });
for (const [id, groups] of users) {
  gb.setAttributes({ id, groups });
  for (const key of keys) {
    const value = gb.evalFeature(key).value;
    out[key].push(value === undefined ? null : value);
  }
}
process.stdout.write(JSON.stringify(out));
