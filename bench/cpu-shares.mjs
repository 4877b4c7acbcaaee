// Where a request's CPU goes across the machine's processes, for `bench/cluster.mjs`: the server
// (all its threads), the local PostgreSQL and Redis (every process of each), and the load
// generator. Their sum bounds the rate the machine can reach however the work were spread, so
// against the baseline's sum it gives the highest ratio a scenario can reach here.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const CLOCK_TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"]).toString());

/** utime + stime of a process (all its threads), in clock ticks; 0 once it is gone. */
function ticksOf(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** The pids of every process whose name is exactly `name`; none where pgrep finds none. */
export function processesNamed(name) {
  try {
    return execFileSync("pgrep", ["-x", name]).toString().trim().split("\n").map(Number);
  } catch {
    return [];
  }
}

/**
 * Runs `wrk -t1 -c50` for `seconds` with the Lua `script` (written to `dir`) against `base`, and
 * returns the requests made and the CPU each group of processes (`groups`: name -> a function
 * listing their pids, asked before and after) spent a request, in µs, with the load generator's
 * own (read from the shell that waited for it).
 */
export function cpuShares({ base, script, seconds, dir, groups }) {
  const file = join(dir, `shares-${Date.now()}.lua`);
  writeFileSync(file, script);
  // Per process: one that ends during the run (a pool's idle connection) counts nothing rather than
  // minus what it had used, and one that starts during it (a new backend) counts all it used.
  const listed = Object.fromEntries(
    Object.entries(groups).map(([name, pids]) => [name, new Map(pids().map((pid) => [pid, ticksOf(pid)]))]),
  );
  const spent = (name) => {
    let total = 0;
    for (const pid of new Set([...listed[name].keys(), ...groups[name]()])) {
      const now = ticksOf(pid);
      if (now > 0) total += Math.max(0, now - (listed[name].get(pid) ?? 0));
    }
    return total;
  };
  const output = execFileSync("bash", [
    "-c",
    `wrk -t1 -c50 -d${seconds}s -s ${file} ${base}; echo; cat /proc/$$/stat`,
  ]).toString();
  const requests = Number(/(\d+) requests in/.exec(output)?.[1] ?? 0);
  const shell = output.trimEnd().split("\n").at(-1).split(") ")[1].split(" ");
  const perRequest = (ticks) => ((ticks / CLOCK_TICKS_PER_SECOND) * 1e6) / Math.max(1, requests);
  const shares = Object.fromEntries(Object.keys(groups).map((name) => [name, perRequest(spent(name))]));
  shares["load generator"] = perRequest(Number(shell[13]) + Number(shell[14]));
  const unexpected = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  return { requests, unexpected, shares };
}
