// src/posix-path.ts stands in for node:path on `qrx run`'s start: it must give node:path's
// posix results for any path, including `.`, `..`, repeated and trailing slashes.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { rmSync } from "node:fs";
import { posix } from "node:path";
import { dirname, join, resolve } from "../src/posix-path.ts";
import { tempDir } from "./helpers/paths.ts";

/** Paths made of the pieces that change a result: slashes, dots and a name or two. */
const path = fc
  .array(fc.constantFrom("/", "//", ".", "..", "...", "a", "b.c", ""), { maxLength: 8 })
  .map((pieces) => pieces.join(""));

test("join, resolve and dirname give node:path's posix results", () => {
  fc.assert(
    fc.property(fc.array(path, { maxLength: 4 }), (paths) => {
      expect(join(...paths)).toBe(posix.join(...paths));
      expect(resolve(...paths)).toBe(posix.resolve(...paths));
      for (const one of paths) expect(dirname(one)).toBe(posix.dirname(one));
    }),
    { numRuns: 20_000 },
  );
});

test("resolve reads the working directory only when no path is absolute", () => {
  const dir = tempDir("qrx-posix-path-");
  const before = process.cwd();
  try {
    process.chdir(dir.path);
    rmSync(dir.path, { recursive: true });
    // As node:path: no working directory is needed, so its being gone is no error.
    expect(resolve("x", "/a/./b/../c/")).toBe("/a/c");
    expect(() => resolve("x")).toThrow();
  } finally {
    process.chdir(before);
    dir.remove();
  }
});
