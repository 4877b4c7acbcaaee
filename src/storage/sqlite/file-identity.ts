import { statSync } from "node:fs";
import { stat } from "node:fs/promises";

/** A file as it was opened: which device and inode its path named then. */
export interface FileIdentity {
  path: string;
  dev: number;
  ino: number;
}

/** The identity of the file at `path` now; undefined if there is none. */
export function identifyFile(path: string): FileIdentity | undefined {
  try {
    const { dev, ino } = statSync(path);
    return { path, dev, ino };
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * Checks every `intervalMs` that each path still names the file it named when opened, and calls
 * `onGone` once (then stops) with why one does not: the file was deleted (ENOENT, the data dir
 * removed with it) or replaced by another (a changed device or inode). An open connection goes on
 * reading and writing a deleted file's inode with no error, so without this a server would answer
 * 2xx for writes no restart will find. `stat` runs on libuv's thread pool, not the event loop.
 */
export function watchFileIdentities(
  files: FileIdentity[],
  onGone: (file: FileIdentity, reason: string) => void,
  intervalMs: number,
): { stop(): void } {
  let stopped = false;
  let checking = false;
  const check = async () => {
    if (checking) return;
    checking = true;
    try {
      for (const file of files) {
        const reason = await stat(file.path).then(
          (now) => (now.dev === file.dev && now.ino === file.ino ? undefined : "replaced by another file"),
          (error: unknown) => ((error as { code?: unknown }).code === "ENOENT" ? "deleted" : undefined),
        );
        if (reason === undefined || stopped) continue;
        stop();
        onGone(file, reason);
        return;
      }
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), intervalMs);
  // The watch never keeps the process alive on its own.
  timer.unref();
  const stop = () => {
    stopped = true;
    clearInterval(timer);
  };
  return { stop };
}
