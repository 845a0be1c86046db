// replaceFile: a reader of the path sees the old text or the new, and nothing is left aside.
import { describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { replaceFile } from "../../src/io/replace-file.ts";
import { tempDir } from "../helpers/paths.ts";

describe("replaceFile", () => {
  test("replaces the file whole and leaves no aside file", () => {
    const dir = tempDir();
    try {
      const path = join(dir.path, "status.json");
      writeFileSync(path, "old");
      replaceFile(path, "new");
      expect(readFileSync(path, "utf8")).toBe("new");
      expect(readdirSync(dir.path)).toEqual(["status.json"]);
    } finally {
      dir.remove();
    }
  });

  test("a failed rename throws, keeps the old file and removes the aside one", () => {
    const dir = tempDir();
    try {
      // A directory where the file should go: the rename fails after the aside write.
      const path = join(dir.path, "taken");
      mkdirSync(path);
      writeFileSync(join(path, "inside"), "");
      expect(() => replaceFile(path, "text")).toThrow();
      expect(readdirSync(dir.path)).toEqual(["taken"]);
    } finally {
      dir.remove();
    }
  });
});
