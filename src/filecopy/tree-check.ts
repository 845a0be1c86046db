// The sender's pre-flight (upstream's qubes-fs-tree-check, spec §4.4): before anything is sent,
// refuse what the receiver would refuse anyway (`.`, `..`, `/`, missing files, symlinks that
// would escape the copied tree), count the bytes the progress will show, and say whether every
// name is safe for display — if one is not, qvm-copy asks for qubes.Filecopy+allow-all-names.

import { lstatSync, readdirSync, readlinkSync } from "node:fs";
import { basename, join } from "node:path";
import { safeForDisplay, validateFilecopySymlink } from "../native.ts";

export interface TreeCheckResult {
  /** 0: fine; 1: refused (see `problems`); 2: fine, but some name needs allow-all-names. */
  status: 0 | 1 | 2;
  /**
   * Bytes of regular files, plus symlink targets unless they are ignored (what progress counts).
   */
  totalBytes: number;
  files: number;
  problems: string[];
  /** Names (relative to the argument's parent) that are not safe for display. */
  unsafeNames: string[];
}

export interface TreeCheckOptions {
  ignoreSymlinks: boolean;
}

function describe(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const messages: Record<string, string> = {
    ENOENT: "No such file or directory",
    EACCES: "Permission denied",
    ENOTDIR: "Not a directory",
    ELOOP: "Too many levels of symbolic links",
  };
  return (code && messages[code]) ?? (error instanceof Error ? error.message : String(error));
}

/** Strips one trailing '/', as qvm-copy does (`dir/` means `dir`). */
export function normalizeSource(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

export function checkTree(sources: string[], options: TreeCheckOptions): TreeCheckResult {
  const result: TreeCheckResult = {
    status: 0,
    totalBytes: 0,
    files: 0,
    problems: [],
    unsafeNames: [],
  };
  const refuse = (message: string) => result.problems.push(message);

  const walk = (path: string, relative: string) => {
    let stat;
    try {
      stat = lstatSync(path);
    } catch (error) {
      return refuse(`cannot copy '${path}': ${describe(error)}`);
    }
    if (!safeForDisplay(basename(relative))) result.unsafeNames.push(relative);
    if (stat.isSymbolicLink()) {
      if (options.ignoreSymlinks) return;
      let target: string;
      try {
        target = readlinkSync(path);
      } catch (error) {
        return refuse(`cannot read the link '${path}': ${describe(error)}`);
      }
      // The receiver's rules, judged on the name it will see (relative to the argument's parent).
      if (validateFilecopySymlink(relative, target, true) !== 0) {
        return refuse(
          relative.includes("/")
            ? `cannot copy the link '${path}' -> '${target}': ` +
                `it would point outside the copied tree`
            : `cannot copy the link '${path}' itself (a top-level ` +
                `symlink): copy what it points to, or its directory`,
        );
      }
      if (!safeForDisplay(target)) result.unsafeNames.push(`${relative} -> ${target}`);
      result.totalBytes += stat.size;
      result.files++;
    } else if (stat.isDirectory()) {
      let entries: string[];
      try {
        entries = readdirSync(path);
      } catch (error) {
        return refuse(`cannot read the directory '${path}': ${describe(error)}`);
      }
      for (const entry of entries) walk(join(path, entry), `${relative}/${entry}`);
    } else if (stat.isFile()) {
      result.totalBytes += stat.size;
      result.files++;
    }
    // fifos, sockets, devices: the sender skips them, so do we.
  };

  for (const raw of sources) {
    const source = normalizeSource(raw);
    const name = basename(source);
    if (source === "") refuse("an empty file name cannot be copied");
    else if (source === "/" || name === "" || name === "." || name === "..")
      refuse(`cannot copy '${raw}': name the files or the directory itself, not '.', '..' or '/'`);
    else walk(source, name);
  }
  result.status = result.problems.length > 0 ? 1 : result.unsafeNames.length > 0 ? 2 : 0;
  return result;
}
