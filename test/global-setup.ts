import { execFileSync } from "node:child_process";

/** Tests that spawn the real server (durability, CLI) run the compiled build, so build once first. */
export default function setup(): void {
  execFileSync(process.execPath, ["scripts/build-if-needed.mjs"], { stdio: "inherit" });
}
