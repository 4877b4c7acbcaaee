import { execFileSync, spawn } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanEnv, freePort } from "./e2e/verifyd-process.js";

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

describe("the verifyd command after an install", () => {
  it("is packed with its build and runs without the sources or a compiler", () => {
    // What `npm install verifyd` unpacks: the package's files (dist/ built by prepack; here the
    // build the global setup made), beside the checkout's dependencies.
    dir = mkdtempSync(join(tmpdir(), "verifyd-pack-"));
    const [packed] = JSON.parse(
      execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], {
        cwd: root,
      }).toString(),
    ) as { filename: string; files: { path: string }[] }[];
    const files = packed?.files.map((file) => file.path) ?? [];
    expect(files).toContain("dist/main.js");
    expect(files).toContain("bin/verifyd.js");
    expect(files.filter((path) => /^(src|test|bench)\//.test(path))).toEqual([]);
    execFileSync("tar", ["xzf", join(dir, packed?.filename as string), "-C", dir]);
    const installed = join(dir, "package");
    mkdirSync(join(installed, "node_modules"));
    // every dependency but the compiler, which an install without devDependencies lacks
    for (const name of readdirSync(join(root, "node_modules"))) {
      if (name !== "typescript")
        symlinkSync(join(root, "node_modules", name), join(installed, "node_modules", name));
    }
    const help = execFileSync(process.execPath, [join(installed, "bin/verifyd.js"), "help"]).toString();
    expect(help).toMatch(/^usage: verifyd \[serve\]/);
  });
});

describe("the README's first command", () => {
  // Regression guard: only the README's text was checked, so a broken start script (or prestart
  // build) would have shipped with every test green and a newcomer's first command failing.
  it("npm start serves the embedded default: a code sent, read from the dev inbox, checked; SIGTERM ends it cleanly", {
    timeout: 60_000,
  }, async () => {
    dir = mkdtempSync(join(tmpdir(), "verifyd-start-"));
    const port = await freePort();
    const child = spawn("npm", ["start"], {
      cwd: root,
      env: cleanEnv({ VERIFYD_PORT: String(port), VERIFYD_DATA_DIR: dir, VERIFYD_LOG_LEVEL: "info" }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += String(chunk);
    });
    child.stderr.on("data", (chunk) => {
      output += String(chunk);
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const base = `http://127.0.0.1:${port}`;
      for (let tries = 0; ; tries++) {
        const up = await fetch(`${base}/healthz`).then(
          (response) => response.ok,
          () => false,
        );
        if (up) break;
        if (tries > 300) throw new Error(`npm start did not listen:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const to = "newcomer@example.com";
      const sent = await fetch(`${base}/v1/verifications`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ channel: "email", to, purpose: "sign_up" }),
      });
      expect(sent.status).toBe(201);
      const { id } = (await sent.json()) as { id: string };
      let code: string | undefined;
      for (let tries = 0; code === undefined && tries < 100; tries++) {
        const inbox = (await (await fetch(`${base}/v1/dev/inbox?to=${to}`)).json()) as {
          messages: { code: string }[];
        };
        code = inbox.messages[0]?.code;
        if (code === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const checked = await fetch(`${base}/v1/verifications/check`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id, code }),
      });
      expect(await checked.json()).toMatchObject({ id, status: "approved" });
      expect(output).toContain("verifyd listening");
      // dev mode's one exception besides the inbox: the dev sender logs the code it delivered
      const devLine = output
        .split("\n")
        .find((line) => line.includes("dev sender: code delivered to the dev inbox"));
      expect(JSON.parse(devLine ?? "{}")).toMatchObject({ code, to });
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });
});
