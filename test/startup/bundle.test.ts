// Start-up bundles (scripts/bundle.ts, bin/launch.sh): a fresh bundle is what runs, and no edit,
// rename, package change or move of the tree ever lets a stale one run old code.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { cpSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync } from "node:fs";
import { utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/paths.ts";
import { refreshBundles } from "../../src/bench/fresh-build.ts";

const ROOT = join(import.meta.dir, "..", "..");
const BUN = join(ROOT, "node_modules", ".bin", "bun");
const ORIGINAL = "Files arrive in ~/QubesIncoming/<this qube> of the target.";
const dirs: { remove: () => void }[] = [];
afterAll(() => dirs.forEach((dir) => dir.remove()));

/** What a developer's clone holds (node_modules and the native build shared by symlink). */
function copyTree(): string {
  const dir = tempDir("qrx-bundle-");
  dirs.push(dir);
  for (const entry of ["bin", "src", "scripts", "package.json", "package-lock.json"]) {
    cpSync(join(ROOT, entry), join(dir.path, entry), { recursive: true });
  }
  symlinkSync(join(ROOT, "node_modules"), join(dir.path, "node_modules"));
  symlinkSync(join(ROOT, "zig-out"), join(dir.path, "zig-out"));
  // A build dates its bundle 10 ms before it starts (an edit in that tick must read as newer),
  // so a copy made just before would make the new bundle stale from the start.
  Bun.sleepSync(50);
  return dir.path;
}

function bundle(tree: string, ...args: string[]): void {
  const argv = [join(tree, "scripts", "bundle.ts"), "--strict", ...args];
  const result = spawnSync(BUN, argv, { encoding: "utf8" });
  expect(result.stderr).not.toContain("cannot bundle");
  expect(result.status).toBe(0);
}

/**
 * The usage text of src/cli/qvm-copy.ts (the line this test edits), as the launcher runs it:
 * through qvm-move, which has no native program (qvm-copy's would answer by itself).
 */
function usage(tree: string): string {
  const result = spawnSync(join(tree, "bin", "qvm-move"), ["--help"], { encoding: "utf8" });
  expect(result.status).toBe(0);
  return result.stdout.split("\n").find((line) => line.startsWith("Files arrive in"))!;
}

const sourceOf = (tree: string) => join(tree, "src", "cli", "qvm-copy.ts");
const bundleTime = (tree: string) => statSync(join(tree, "bundle", "qvm-copy.js")).mtimeMs / 1000;

const edited = (source: string, text: string) =>
  readFileSync(source, "utf8").replace(/Files arrive in [^\n`]*/, text);

/** Rewrites the usage line in place, its mtime put back before the bundle was built. */
function editUnseen(tree: string, text: string): void {
  const source = sourceOf(tree);
  writeFileSync(source, edited(source, text));
  const before = bundleTime(tree) - 10;
  utimesSync(source, before, before);
}

describe("the launcher and a bundle", () => {
  test("runs the bundle while no input is newer, and the sources once one is", () => {
    const tree = copyTree();
    bundle(tree, "qvm-copy");
    expect(usage(tree)).toBe(ORIGINAL);
    // The sources now say otherwise but look older than the bundle: the bundle is what runs.
    editUnseen(tree, "Files arrive in EDIT-A");
    expect(usage(tree)).toBe(ORIGINAL);
    const now = Date.now() / 1000;
    utimesSync(sourceOf(tree), now, now);
    expect(usage(tree)).toBe("Files arrive in EDIT-A");
    bundle(tree, "qvm-copy");
    editUnseen(tree, "Files arrive in EDIT-B");
    expect(usage(tree)).toBe("Files arrive in EDIT-A");
  }, 30_000);

  test("a benchmark's refresh rebuilds a bundle an edit made stale, and only then", () => {
    const tree = copyTree();
    expect(refreshBundles(tree)).toMatch(/bundled \d+ program/);
    expect(usage(tree)).toBe(ORIGINAL);
    expect(refreshBundles(tree)).toBe("");
    writeFileSync(sourceOf(tree), edited(sourceOf(tree), "Files arrive in EDIT-C"));
    expect(refreshBundles(tree)).toMatch(/bundled [1-9]\d* program/);
    expect(usage(tree)).toBe("Files arrive in EDIT-C");
    // The new text comes from the bundle, not from the sources' fallback: older sources win.
    editUnseen(tree, "Files arrive in EDIT-D");
    expect(usage(tree)).toBe("Files arrive in EDIT-C");
  }, 60_000);

  test("stays fresh when a file no program reads is written at the checkout's root", () => {
    // qrx reads package.json (its version), the one program whose inputs lie in the root.
    const tree = copyTree();
    bundle(tree, "qrx");
    const versionSource = join(tree, "src", "cli", "version.ts");
    const before = statSync(join(tree, "bundle", "qrx.js")).mtimeMs / 1000 - 10;
    writeFileSync(
      versionSource,
      readFileSync(versionSource, "utf8").replace("qrx ${", "EDITED ${"),
    );
    utimesSync(versionSource, before, before);
    const version = () => spawnSync(join(tree, "bin", "qrx"), ["--version"], { encoding: "utf8" });
    writeFileSync(join(tree, "notes.txt"), "a user's note\n");
    expect(version().stdout).toStartWith("qrx ");
    writeFileSync(join(tree, "tsconfig.json"), "{}\n");
    expect(version().stdout).toStartWith("EDITED ");
  }, 30_000);

  test("sees an input replaced by an older file, a changed package.json and a moved tree", () => {
    const tree = copyTree();
    bundle(tree, "qvm-copy");
    const source = sourceOf(tree);
    // Renamed over the input with an mtime older than the bundle: the directory's mtime tells.
    const replacement = join(tree, "replacement.ts");
    writeFileSync(replacement, edited(source, "Files arrive in EDIT-C"));
    const before = bundleTime(tree) - 10;
    utimesSync(replacement, before, before);
    renameSync(replacement, source);
    expect(usage(tree)).toBe("Files arrive in EDIT-C");

    bundle(tree, "qvm-copy");
    editUnseen(tree, "Files arrive in EDIT-D");
    expect(usage(tree)).toBe("Files arrive in EDIT-C");
    const now = Date.now() / 1000;
    utimesSync(join(tree, "package.json"), now, now);
    expect(usage(tree)).toBe("Files arrive in EDIT-D");

    // A copy that keeps every mtime holds a bundle built elsewhere: it runs its own sources.
    bundle(tree, "qvm-copy");
    editUnseen(tree, "Files arrive in EDIT-E");
    const moved = tempDir("qrx-bundle-moved-");
    dirs.push(moved);
    spawnSync("cp", ["-a", `${tree}/.`, moved.path]);
    expect(usage(moved.path)).toBe("Files arrive in EDIT-E");
    expect(usage(tree)).toBe("Files arrive in EDIT-D");
  }, 30_000);
});

describe("the programs in bin/", () => {
  const launchers = readdirSync(join(ROOT, "bin")).filter((name) => name !== "launch.sh");

  test("every program has a fresh bundle after set-up", () => {
    bundle(ROOT);
    const programs = new Set<string>();
    for (const launcher of launchers) {
      const text = readFileSync(join(ROOT, "bin", launcher), "utf8");
      // A plain shell script (qvm-open-in-vm) has no program to bundle.
      const program = /\bprogram=([a-z0-9-]+)/.exec(text)?.[1];
      if (program !== undefined) programs.add(program);
    }
    for (const program of programs) {
      const env = { ...process.env, root: ROOT, bundle: join(ROOT, "bundle", `${program}.js`) };
      const check = spawnSync("/bin/sh", ["-c", `. "$root/bundle/${program}.check.sh"`], { env });
      expect({ program, fresh: check.status === 0 }).toEqual({ program, fresh: true });
    }
  }, 60_000);

  test.each(launchers)(
    "%s --help prints what its sources print",
    (launcher) => {
      const run = (env: Record<string, string>) => {
        const options = { encoding: "utf8", env: { ...process.env, ...env } } as const;
        const result = spawnSync(join(ROOT, "bin", launcher), ["--help"], options);
        return { status: result.status, stdout: result.stdout, stderr: result.stderr };
      };
      const fromSources = run({ QRX_BUNDLE: "off" });
      expect(fromSources.stdout + fromSources.stderr).toMatch(/usage/i);
      expect(run({})).toEqual(fromSources);
    },
    20_000,
  );
});
