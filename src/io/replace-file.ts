// Files that other processes read while we rewrite them (lab status, call counts, domain facts).
import { renameSync, rmSync, writeFileSync } from "node:fs";

/**
 * Replaces `path` with `text`: written aside (`PATH.new`) and renamed into place, so a reader
 * sees the old version or the new one, never half of one. On failure it throws and leaves no
 * aside file behind.
 */
export function replaceFile(path: string, text: string): void {
  const aside = `${path}.new`;
  try {
    writeFileSync(aside, text);
    renameSync(aside, path);
  } catch (error) {
    rmSync(aside, { force: true });
    throw error;
  }
}
