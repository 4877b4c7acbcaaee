// Prints the hottest functions (self time) of a V8 .cpuprofile: node bench/profile-summary.mjs FILE [N]
import { readFileSync } from "node:fs";

const profile = JSON.parse(readFileSync(process.argv[2], "utf8"));
const limit = Number(process.argv[3] ?? 30);
const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const selfTime = new Map();
let total = 0;
profile.samples.forEach((id, index) => {
  const delta = profile.timeDeltas[index] ?? 0;
  total += delta;
  const { functionName, url, lineNumber } = nodes.get(id).callFrame;
  const key = `${functionName || "(anonymous)"} ${url.split("/").slice(-2).join("/")}:${lineNumber + 1}`;
  selfTime.set(key, (selfTime.get(key) ?? 0) + delta);
});
for (const [key, time] of [...selfTime].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
  console.log(`${((time / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
}

// With a third argument "--inclusive": time under each function (itself and what it calls).
if (process.argv.includes("--inclusive")) {
  const parents = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const inclusive = new Map();
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    const seen = new Set();
    for (let current = id; current !== undefined; current = parents.get(current)) {
      const { functionName, url, lineNumber } = nodes.get(current).callFrame;
      const key = `${functionName || "(anonymous)"} ${url.split("/").slice(-2).join("/")}:${lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + delta);
    }
  });
  console.log("\ninclusive:");
  for (const [key, time] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
    console.log(`${((time / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
}
