// Files a command will write, checked before it does its work (a sweep runs for minutes, a lab
// comes up): a path it cannot write is named with the reason in words at once, not found out
// with a stack trace at the end. The same words for a file it cannot read.
import { closeSync, existsSync, openSync, rmSync } from "node:fs";

/** Why a file could not be opened, in words rather than Node's `ENOENT: ..., open 'PATH'`. */
const FAILURES: Record<string, string> = {
  ENOTDIR: "a component of its path is not a directory",
  EACCES: "permission denied",
  EISDIR: "it is a directory",
  EROFS: "the file system is read-only",
};

/** `error`, from opening a file to write (`writing`) or to read, in words. */
export function openFailure(error: unknown, writing: boolean): string {
  const code = (error as NodeJS.ErrnoException).code ?? "";
  if (code === "ENOENT") return writing ? "its directory does not exist" : "no such file";
  return FAILURES[code] ?? (error instanceof Error ? error.message : String(error));
}

/** Why `path` cannot be opened for writing here, or null. Leaves behind no file it made. */
export function unwritable(path: string): string | null {
  const existed = existsSync(path);
  try {
    closeSync(openSync(path, "a"));
  } catch (error) {
    return openFailure(error, true);
  }
  if (!existed) rmSync(path, { force: true });
  return null;
}
