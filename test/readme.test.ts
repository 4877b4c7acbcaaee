import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ENVIRONMENT_KEYS } from "../src/config/schema.js";
import { VERIFICATION_STATUSES } from "../src/core/types.js";
import { NATIVE_ERROR_STATUS } from "../src/http/native/error-map.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const cells = (row: string) =>
  row
    .split("|")
    .map((cell) => cell.trim())
    .filter(Boolean)
    .join(" | ");
const tableRows = (markdown: string) =>
  markdown
    .split("\n")
    .filter((line) => line.startsWith("|") && !/^\|[\s|:-]+\|$/.test(line))
    .map(cells);

describe("README", () => {
  const published = new Set(tableRows(readme));
  for (const face of ["fresns", "cloudbase", "idaas"]) {
    it(`publishes every row of the ${face} error table`, () => {
      const source = readFileSync(new URL(`../src/http/dialects/${face}/ERRORS.md`, import.meta.url), "utf8");
      const rows = tableRows(source);
      expect(rows.length).toBeGreaterThan(5);
      for (const row of rows) expect(published.has(row), row).toBe(true);
    });
  }

  it("gives each native error code the status the native error map gives it, and every code a row", () => {
    const intro = "kept equal to `src/http/native/error-map.ts` by a test:";
    expect(readme).toContain(intro);
    const after = readme.slice(readme.indexOf(intro) + intro.length).trimStart();
    const table = after.slice(0, after.indexOf("\n\n"));
    const published = new Map<string, number>();
    for (const row of tableRows(table)) {
      const [status, codes] = row.split(" | ");
      if (!status || !/^\d{3}$/.test(status)) continue;
      for (const [, code] of (codes ?? "").matchAll(/`([A-Z_]+)`/g)) {
        expect(published.has(code as string), `${code} is in two rows`).toBe(false);
        published.set(code as string, Number(status));
      }
    }
    expect(Object.fromEntries(published)).toEqual(NATIVE_ERROR_STATUS);
  });

  it("lists every environment variable verifyd reads, VERIFYD_CONFIG included, and no other", () => {
    const table = readme.slice(
      readme.indexOf("| variable"),
      readme.indexOf("\n\n", readme.indexOf("| variable")),
    );
    const listed = tableRows(table)
      .slice(1)
      .flatMap((row) =>
        [...(row.split(" | ")[0] ?? "").matchAll(/`(VERIFYD_[A-Z_]+)`/g)].map((match) => match[1]),
      );
    expect(listed.sort()).toEqual(["VERIFYD_CONFIG", ...Object.keys(ENVIRONMENT_KEYS)].sort());
  });

  it("lists every verification status", () => {
    const sentence = readme.match(/A verification's `status` is one of ([^.]+)\./)?.[1] ?? "";
    expect([...sentence.matchAll(/`([a-z_]+)`/g)].map((match) => match[1])).toEqual([
      ...VERIFICATION_STATUSES,
    ]);
  });

  describe("Contents and in-page links", () => {
    // GitHub's heading anchors: lower case, punctuation but `-` and `_` dropped, spaces as `-`.
    const slug = (title: string) =>
      title
        .toLowerCase()
        .replace(/[^\p{L}\p{N}_\- ]/gu, "")
        .replaceAll(" ", "-");
    const headings = readme
      .replace(/^```[\s\S]*?^```/gm, "")
      .split("\n")
      .flatMap((line) => {
        const match = /^(#{2,4}) (.+)$/.exec(line);
        return match ? [{ level: match[1]?.length ?? 0, title: match[2] ?? "" }] : [];
      });
    const anchors = new Set(headings.map((heading) => slug(heading.title)));
    const contents = readme.slice(readme.indexOf("## Contents"), readme.indexOf("## Quick start"));

    it("points every in-page link at a heading", () => {
      const links = [...readme.matchAll(/\]\(#([^)]+)\)/g)].map((match) => match[1]);
      expect(links.length).toBeGreaterThan(10);
      for (const link of links) expect(anchors.has(link as string), link).toBe(true);
    });

    it("lists every section and subsection in Contents", () => {
      for (const { level, title } of headings) {
        if (level > 3 || title === "Contents") continue;
        expect(contents, title).toContain(`(#${slug(title)})`);
      }
    });
  });

  it("keeps version-to-version upgrade notes in UPGRADING.md, linked from the README", () => {
    const upgrading = readFileSync(new URL("../UPGRADING.md", import.meta.url), "utf8");
    expect(readme).toContain("(UPGRADING.md)");
    for (const phrase of [
      /an earlier version/i,
      /an older version/i,
      /before this version/i,
      /minted before/i,
      /upgrading from a build/i,
      /upgrading a cluster/i,
      /once allowed/i,
    ]) {
      expect(readme, String(phrase)).not.toMatch(phrase);
      expect(upgrading, String(phrase)).toMatch(phrase);
    }
  });

  it("gives the two quick-start commands", () => {
    expect(readme).toContain("npm install && npm start");
    expect(readme).toContain("npm install && npm test");
  });
});
