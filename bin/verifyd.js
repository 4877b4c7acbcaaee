#!/usr/bin/env node
// The `verifyd` command: in a checkout, builds dist/ when it is missing or older than the sources
// (as `npm start` does, so a pulled change is never run from a stale build), then runs the CLI.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

if (existsSync(fileURLToPath(new URL("../src", import.meta.url)))) {
  await import("../scripts/build-if-needed.mjs");
}
await import("../dist/main.js");
