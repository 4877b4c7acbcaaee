import { closeSync, existsSync, mkdirSync, openSync, statSync } from "node:fs";

/**
 * The data dir holds addresses and numbers in clear (and, in dev mode, the codes of the dev
 * inbox): a dir this creates is its owner's alone (0700), whatever the umask. One that exists
 * keeps the mode its operator gave it.
 */
export function createPrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/**
 * Creates an empty file readable by its owner alone (0600) unless it exists, so that SQLite, which
 * would create it 0644 less the umask, opens it instead; SQLite gives its -wal and -shm files the
 * mode of the database file.
 */
export function createPrivateFile(path: string): void {
  if (existsSync(path)) return;
  try {
    closeSync(openSync(path, "wx", 0o600));
  } catch (error) {
    // another process made it first: SQLite opens that one
    if ((error as { code?: unknown }).code !== "EEXIST") throw error;
  }
}

/**
 * Which of `paths` other local users may read or write (group or world bits), with their modes
 * in octal: a data dir an earlier version made under the usual umask keeps 0755 and 0644, as an
 * operator's own choice of mode is kept, so a start says so rather than change it.
 */
export function openToOthers(paths: string[]): { path: string; mode: string }[] {
  return paths.flatMap((path) => {
    try {
      const mode = statSync(path).mode & 0o777;
      return (mode & 0o077) === 0 ? [] : [{ path, mode: mode.toString(8).padStart(4, "0") }];
    } catch {
      return [];
    }
  });
}
