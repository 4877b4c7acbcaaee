import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;
let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the verifyd command in a checkout", () => {
  it("rebuilds a dist/ older than the sources before it runs, as npm start does", () => {
    // A checkout in miniature: the real bin and build script, a stand-in compiler that writes a
    // main.js saying "new", and a stale main.js saying "old".
    dir = mkdtempSync(join(tmpdir(), "verifyd-bin-"));
    for (const path of ["bin", "scripts", "src", "dist", "node_modules/typescript/bin"]) {
      mkdirSync(join(dir, path), { recursive: true });
    }
    copyFileSync(join(root, "bin/verifyd.js"), join(dir, "bin/verifyd.js"));
    copyFileSync(join(root, "scripts/build-if-needed.mjs"), join(dir, "scripts/build-if-needed.mjs"));
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
    writeFileSync(join(dir, "tsconfig.json"), "{}\n");
    writeFileSync(
      join(dir, "node_modules/typescript/bin/tsc"),
      `require("node:fs").writeFileSync(${JSON.stringify(join(dir, "dist/main.js"))}, 'console.log("new");\\n');\n`,
    );
    writeFileSync(join(dir, "node_modules/typescript/package.json"), '{ "type": "commonjs" }\n');
    writeFileSync(join(dir, "dist/main.js"), 'console.log("old");\n');
    const past = new Date(Date.now() - 60_000);
    utimesSync(join(dir, "dist/main.js"), past, past);
    utimesSync(join(dir, "tsconfig.json"), past, past);
    writeFileSync(join(dir, "src/cli.ts"), "// changed since the build\n");

    const run = () =>
      execFileSync(process.execPath, [join(dir as string, "bin/verifyd.js")])
        .toString()
        .trim();
    expect(run()).toBe("new");
    expect(run()).toBe("new"); // and fresh now: not built again
  });
});
