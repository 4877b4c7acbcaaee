// `node bench/floor.mjs`: what the HTTP stack alone allows on this machine. Bare Fastify (see
// floor-server.mjs) under the same load as `bench/run.mjs`: its refusals' ratios to its own
// /healthz are the ceiling for verifyd's refusals, which do the same HTTP work and more.
import { join } from "node:path";
import { baselineOf, paired, printTable, root, sendRequest, startServer } from "./lib.mjs";

const { child, base } = await startServer(join(root, "bench", "floor-server.mjs"), {});
const baseline = {
  name: "bare Fastify: GET /healthz",
  base,
  request: { path: "/healthz" },
  expectedStatus: 200,
};
const refusal = (name, path, expectedStatus) => ({
  name,
  base,
  request: { ...sendRequest(1, { channel: "email", to: "floor@example.com", purpose: "sign_in" }), path },
  expectedStatus,
});
const results = [];
try {
  results.push(
    await paired(
      baseline,
      refusal("bare Fastify: POST refused after its body is read (429)", "/refuse-after-body", 429),
    ),
    await paired(
      baseline,
      refusal("bare Fastify: POST refused before its body is read (428)", "/refuse-before-body", 428),
    ),
  );
} finally {
  child.kill("SIGTERM");
}
printTable("HTTP floor (bare Fastify, no verifyd)", [baselineOf(baseline.name, results), ...results]);
