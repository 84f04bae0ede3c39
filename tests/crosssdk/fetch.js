// GrowthBook's JavaScript SDK loading features from an apiHost/clientKey, as an app pointed at the controller.
// usage: node fetch.js API_HOST CLIENT_KEY FEATURE ID [GROUP...]  → prints the feature value as JSON
"use strict";
const { GrowthBook } = require("@growthbook/growthbook");

async function main() {
  const [apiHost, clientKey, feature, id, ...groups] = process.argv.slice(2);
  const gb = new GrowthBook({ apiHost, clientKey });
  const { error } = await gb.init({ timeout: 5000 });
  if (error) throw error;
  await gb.setAttributes({ id, groups });
  process.stdout.write(JSON.stringify(gb.getFeatureValue(feature, null)));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
