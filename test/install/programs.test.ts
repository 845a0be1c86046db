// The program lists that must agree: bin/'s launchers, package.json's `bin` and `man` (what npm
// installs), and the single executable's table (src/cli/programs.ts, with the shell scripts it
// copies). A program added to one
// and not the others would be missing from an install or from `npm run dist`.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { INTERNAL_ENTRIES } from "../../src/install-paths.ts";
import { PROGRAMS, SCRIPT_PROGRAMS } from "../../src/cli/programs.ts";

const ROOT = join(import.meta.dir, "..", "..");
const PACKAGE = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  bin: Record<string, string>;
  man: string[];
};
const sorted = (names: Iterable<string>) => [...names].sort();

test("bin/, package.json bin and man, and the executable's programs name the same programs", () => {
  const launchers = readdirSync(join(ROOT, "bin")).filter((name) => name !== "launch.sh");
  expect(sorted(Object.keys(PACKAGE.bin))).toEqual(sorted(launchers));
  for (const [name, path] of Object.entries(PACKAGE.bin)) expect(path).toBe(`bin/${name}`);
  expect(sorted(PACKAGE.man)).toEqual(sorted(launchers.map((name) => `share/man/man1/${name}.1`)));
  const internal = Object.keys(INTERNAL_ENTRIES).filter((name) => !launchers.includes(name));
  const scripts: string[] = [...SCRIPT_PROGRAMS];
  for (const name of scripts) {
    expect(readFileSync(join(ROOT, "bin", name), "utf8")).toStartWith("#!/bin/sh");
  }
  const bun = launchers.filter((name) => !scripts.includes(name));
  expect(sorted(Object.keys(PROGRAMS))).toEqual(sorted([...bun, ...internal]));
});
