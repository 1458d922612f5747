// node-red-contrib-deepstack 0.3 (Node-RED's DeepStack nodes): its own request functions,
// objectDetection and customModel from deepstack-integration.js, called as its nodes call them.
// sharp (used only by its picture-drawing nodes) is installed without its install script, so it
// is never loaded here. Prints one line of JSON for tests/test_clients_e2e.py.
"use strict";
const fs = require("fs");
const deepstack = require("node-red-contrib-deepstack/deepstack-integration.js");

const [url, token, model, dogPath, busPath] = process.argv.slice(2);
const where = new URL(url);
const server = (apiKey) => ({
  proto: where.protocol.replace(":", ""),
  host: where.hostname,
  port: where.port,
  version: "v1",
  credentials: { apiKey },
  rejectUnauthorized: true,
});
const labels = (answer) => answer.predictions.map((p) => p.label);
const failure = (promise) =>
  promise.then(
    () => "no error",
    (error) => `${error.name}: ${error.message}`
  );

(async () => {
  const dog = fs.readFileSync(dogPath);
  const bus = fs.readFileSync(busPath);
  const result = {
    dog: [...new Set(labels(await deepstack.objectDetection(dog, server(token), 0.4)))].sort(),
    bus: labels(await deepstack.customModel(bus, server(token), 0.4, model)),
    wrong_key: await failure(deepstack.objectDetection(dog, server("wrong-key"), 0.4)),
    unknown_model: await failure(deepstack.customModel(dog, server(token), 0.4, "nope")),
  };
  process.stdout.write(JSON.stringify(result) + "\n");
})().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
