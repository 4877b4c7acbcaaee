#!/usr/bin/env node
// The `verifyd` command: builds dist/ on first use in a checkout, then runs the CLI.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = fileURLToPath(new URL("../dist/main.js", import.meta.url));
if (!existsSync(main)) {
  execFileSync(
    process.execPath,
    [fileURLToPath(new URL("../scripts/build-if-needed.mjs", import.meta.url))],
    {
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
}
await import(main);
