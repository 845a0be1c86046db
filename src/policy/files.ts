// The loader reads through this small interface so tests can load policies from memory and the
// real loader from disk with the same code. Reads are synchronous on purpose: a policy is read
// whole in one go, so nothing can interleave with a half-read one.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";

export type EntryKind = "file" | "directory" | "other";

export interface DirectoryEntry {
  name: string;
  /** Symbolic links are followed, as upstream's is_file() does. */
  kind: EntryKind;
}

export interface PolicyFileSystem {
  /** Throws (with an errno-style `code` when it has one) if the file cannot be read. */
  readText(path: string): string;
  /** Throws if the directory cannot be listed. */
  list(directory: string): DirectoryEntry[];
  /** Whether `path` exists at all (a missing directory is not an error everywhere). */
  exists(path: string): boolean;
}

function kindOf(path: string): EntryKind {
  try {
    const stat = statSync(path);
    return stat.isFile() ? "file" : stat.isDirectory() ? "directory" : "other";
  } catch {
    return "other"; // a dangling link is not a policy file
  }
}

export const diskFileSystem: PolicyFileSystem = {
  readText: (path) => readFileSync(path, "utf8"),
  list: (directory) =>
    readdirSync(directory, { withFileTypes: true }).map((entry) => ({
      name: entry.name,
      kind: entry.isSymbolicLink()
        ? kindOf(`${directory}/${entry.name}`)
        : entry.isFile()
          ? "file"
          : entry.isDirectory()
            ? "directory"
            : "other",
    })),
  exists: (path) => {
    try {
      statSync(path);
      return true;
    } catch {
      return false;
    }
  },
};

function notFound(path: string): Error {
  return Object.assign(new Error(`ENOENT: no such file or directory, '${path}'`), {
    code: "ENOENT",
  });
}

/** Files given as absolute path -> text; directories exist wherever some file lies below them. */
export function memoryFileSystem(files: Record<string, string>): PolicyFileSystem {
  const texts = new Map(Object.entries(files));
  const directories = new Map<string, Map<string, EntryKind>>();
  for (const path of texts.keys()) {
    let child = path;
    let kind: EntryKind = "file";
    while (child !== "/") {
      const parent = dirname(child);
      const entries = directories.get(parent) ?? new Map<string, EntryKind>();
      entries.set(child.slice(parent === "/" ? 1 : parent.length + 1), kind);
      directories.set(parent, entries);
      child = parent;
      kind = "directory";
    }
  }
  return {
    readText(path) {
      const text = texts.get(path);
      if (text === undefined) throw notFound(path);
      return text;
    },
    list(directory) {
      const entries = directories.get(directory);
      if (entries === undefined) throw notFound(directory);
      return [...entries].map(([name, kind]) => ({ name, kind }));
    },
    exists: (path) => texts.has(path) || directories.has(path),
  };
}

/** Sorting by UTF-8 bytes, as upstream sorts file names (JS string order differs past U+FFFF). */
export function compareBytewise(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
