import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Most test files spend their time waiting on sockets, child processes and timeouts, not on a
    // core, so a file per core (less one, vitest's default: one worker on a two-core machine) left
    // the machine half idle. Three workers on two cores took the suite from 408 s to 251 s.
    maxWorkers: Math.max(3, availableParallelism() - 1),
  },
});
