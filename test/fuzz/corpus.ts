// The TypeScript side of test/fuzz/corpus/: each harness's kept inputs as JSON files, and the
// shared list of known failing inputs (`<harness>/<file>` lines) that replays skip until fixed.

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { Harness } from "./harness.ts";

export const CORPUS_DIR = join(import.meta.dir, "corpus");

export function knownFailing(): Set<string> {
  const path = join(CORPUS_DIR, "known-failing.txt");
  if (!existsSync(path)) return new Set();
  return new Set(
    readFileSync(path, "utf8")
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#")),
  );
}

/** The kept inputs of `harness` (file name and input), known failing ones left out. */
export function corpusOf<T>(harness: Harness<T>): { file: string; input: T }[] {
  const dir = join(CORPUS_DIR, harness.name);
  if (!existsSync(dir)) return [];
  const skip = knownFailing();
  return readdirSync(dir)
    .filter((file) => file.endsWith(".json") && !skip.has(`${harness.name}/${file}`))
    .sort()
    .map((file) => ({
      file,
      input: harness.fromJson(JSON.parse(readFileSync(join(dir, file), "utf8"))),
    }));
}

/** Keeps a failing input; returns its path. Named by its content's hash: a rerun adds none. */
export function keep<T>(harness: Harness<T>, input: T): string {
  const text = JSON.stringify(harness.toJson(input), null, 1) + "\n";
  const dir = join(CORPUS_DIR, harness.name);
  mkdirSync(dir, { recursive: true });
  const path = join(
    dir,
    `failure-${createHash("sha256").update(text).digest("hex").slice(0, 16)}.json`,
  );
  writeFileSync(path, text);
  return path;
}
