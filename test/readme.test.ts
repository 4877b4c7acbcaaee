import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

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

  it("gives the two quick-start commands", () => {
    expect(readme).toContain("npm install && npm start");
    expect(readme).toContain("npm install && npm test");
  });
});
