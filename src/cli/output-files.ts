// Files a command will write, checked before it does its work (a sweep runs for minutes, a lab
// comes up): a path it cannot write is named with the reason in words at once, not found out
// with a stack trace at the end.
import { closeSync, existsSync, openSync, rmSync } from "node:fs";

/** Why a file could not be opened, in words rather than Node's `ENOENT: ..., open 'PATH'`. */
const OPEN_FAILURES: Record<string, string> = {
  ENOENT: "its directory does not exist",
  ENOTDIR: "a component of its path is not a directory",
  EACCES: "permission denied",
  EISDIR: "it is a directory",
  EROFS: "the file system is read-only",
};

/** Why `path` cannot be opened for writing here, or null. Leaves behind no file it made. */
export function unwritable(path: string): string | null {
  const existed = existsSync(path);
  try {
    closeSync(openSync(path, "a"));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    return OPEN_FAILURES[code] ?? (error as Error).message;
  }
  if (!existed) rmSync(path, { force: true });
  return null;
}
