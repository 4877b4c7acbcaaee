#!/usr/bin/env node
import { runCli } from "./cli.js";

// The composition root: `node dist/main.js [command]` (and the `verifyd` bin) start here.
runCli(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  },
);
