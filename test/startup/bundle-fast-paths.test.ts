// What makes a start cheaper than loading a whole bundle (scripts/bundle.ts), never at the cost
// of stale code: a help option alone is answered by bin/launch.sh from the text its bundle's
// check recorded, without starting Bun (only while the bundle is fresh, only with the environment
// the program read at the recording, never on a terminal); and `qrx`'s commands are a bundle
// file of their own, which a plain `qrx run` does not load.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/paths.ts";

const ROOT = join(import.meta.dir, "..", "..");
const BUN = join(ROOT, "node_modules", ".bin", "bun");
const ORIGINAL = "Files arrive in ~/QubesIncoming/<this qube> of the target.";
const dirs: { remove: () => void }[] = [];
afterAll(() => dirs.forEach((dir) => dir.remove()));

/**
 * A copy of the tree whose node_modules/.bin/bun logs each start to node_modules/bun.log (outside
 * every bundle's inputs) before it runs the real Bun: a run that leaves the log empty did not
 * start Bun.
 */
function copyTreeWithBunLog(): string {
  const dir = tempDir("qrx-help-");
  dirs.push(dir);
  const tree = dir.path;
  for (const entry of ["bin", "src", "scripts", "package.json", "package-lock.json"]) {
    cpSync(join(ROOT, entry), join(tree, entry), { recursive: true });
  }
  symlinkSync(join(ROOT, "zig-out"), join(tree, "zig-out"));
  const modules = join(ROOT, "node_modules");
  mkdirSync(join(tree, "node_modules", ".bin"), { recursive: true });
  for (const entry of readdirSync(modules).filter((name) => name !== ".bin")) {
    symlinkSync(join(modules, entry), join(tree, "node_modules", entry));
  }
  const log = join(tree, "node_modules", "bun.log");
  const wrapper = `#!/bin/sh\necho "$*" >> '${log}'\nexec '${BUN}' "$@"\n`;
  writeFileSync(join(tree, "node_modules", ".bin", "bun"), wrapper, { mode: 0o755 });
  mkdirSync(join(tree, "bundle"));
  // A build dates its bundle 10 ms before it starts (an edit in that tick must read as newer),
  // so a copy made just before would make the new bundle stale from the start.
  Bun.sleepSync(50);
  return tree;
}

function bundleProgram(tree: string, program: string): void {
  const argv = [join(tree, "scripts", "bundle.ts"), "--strict", program];
  const env = { ...process.env };
  delete env.QRX_PROGRAM_NAME;
  const result = spawnSync(BUN, argv, { encoding: "utf8", env });
  expect(result.stderr).not.toContain("cannot bundle");
  expect(result.status).toBe(0);
}

const bundleQvmCopy = (tree: string) => bundleProgram(tree, "qvm-copy");

/** A fresh tree with `program` bundled, and the text of its entry bundle. */
function bundledEntry(program: string): { tree: string; entry: string } {
  const tree = copyTreeWithBunLog();
  bundleProgram(tree, program);
  return { tree, entry: readFileSync(join(tree, "bundle", `${program}.js`), "utf8") };
}

type Run = { status: number | null; stdout: string; stderr: string; startedBun: boolean };

/** qvm-copy's launcher path (bin/launch.sh for the Bun program) with ARGS, output to pipes. */
function launch(tree: string, args: string[], env: Record<string, string> = {}, prefix = ""): Run {
  const log = join(tree, "node_modules", "bun.log");
  rmSync(log, { force: true });
  const base = { ...process.env };
  delete base.QRX_PROGRAM_NAME;
  const script = `${prefix}program=qvm-copy here=$1 && shift && . "$here/launch.sh"`;
  const result = spawnSync("/bin/sh", ["-c", script, "sh", join(tree, "bin"), ...args], {
    encoding: "utf8",
    env: { ...base, ...env },
  });
  const { status, stdout, stderr } = result;
  return { status, stdout, stderr, startedBun: readFileSync(log, { flag: "a+" }).length > 0 };
}

const filesLine = (run: Run) => run.stdout.split("\n").find((line) => line.startsWith("Files"));

describe("the help a launcher replays", () => {
  test("is what the sources print, for --help, -h and -- --help, without starting Bun", () => {
    const tree = copyTreeWithBunLog();
    bundleQvmCopy(tree);
    const fromSources = launch(tree, ["--help"], { QRX_BUNDLE: "off" });
    expect(fromSources.startedBun).toBe(true);
    expect(filesLine(fromSources)).toBe(ORIGINAL);
    for (const args of [["--help"], ["-h"], ["--", "--help"]]) {
      expect({ args, ...launch(tree, args) }).toEqual({ args, ...fromSources, startedBun: false });
    }
    // Anything else is the program's: a usage error is not a help text.
    const wrong = launch(tree, ["--help", "extra"]);
    expect(wrong.startedBun).toBe(true);
  }, 60_000);

  test("is never stale: an edit of an input shows the new text at once", () => {
    const tree = copyTreeWithBunLog();
    bundleQvmCopy(tree);
    expect(filesLine(launch(tree, ["--help"]))).toBe(ORIGINAL);
    const source = join(tree, "src", "cli", "qvm-copy.ts");
    writeFileSync(
      source,
      readFileSync(source, "utf8").replace(/Files arrive in [^\n`]*/, "Files EDIT"),
    );
    const now = Date.now() / 1000;
    utimesSync(source, now, now);
    const edited = launch(tree, ["--help"]);
    expect(edited.startedBun).toBe(true);
    expect(filesLine(edited)).toBe("Files EDIT");
    // Rebuilt: the new text is the one replayed.
    bundleQvmCopy(tree);
    const replayed = launch(tree, ["--help"]);
    expect({ startedBun: replayed.startedBun, line: filesLine(replayed) }).toEqual({
      startedBun: false,
      line: "Files EDIT",
    });
  }, 60_000);

  test("starts Bun when a variable the program read differs from the recording", () => {
    const tree = copyTreeWithBunLog();
    bundleQvmCopy(tree);
    // qvm-copy's text names the program it runs as, from QRX_PROGRAM_NAME: recorded unset and
    // as each launcher in bin/ sets it, not as this name.
    const other = launch(tree, ["--help"], { QRX_PROGRAM_NAME: "qvm-elsewhere" });
    expect(other.startedBun).toBe(true);
    expect(other.stdout).toStartWith("usage: qvm-elsewhere ");
    const fromSources = { QRX_BUNDLE: "off", QRX_PROGRAM_NAME: "qvm-elsewhere" };
    expect(launch(tree, ["--help"], fromSources)).toEqual(other);
  }, 60_000);

  test("is recorded for each name a launcher in bin/ gives the program", () => {
    const tree = copyTreeWithBunLog();
    bundleQvmCopy(tree);
    const moved = launch(tree, ["--help"], { QRX_PROGRAM_NAME: "qvm-move" });
    expect(moved.stdout).toStartWith("usage: qvm-move ");
    const fromSources = launch(tree, ["--help"], {
      QRX_BUNDLE: "off",
      QRX_PROGRAM_NAME: "qvm-move",
    });
    expect(moved).toEqual({ ...fromSources, startedBun: false });
  }, 60_000);

  test("starts Bun when stdout is closed (Bun writes it to /dev/null)", () => {
    const tree = copyTreeWithBunLog();
    bundleQvmCopy(tree);
    const closed = launch(tree, ["--help"], {}, "exec 1>&-; ");
    expect(closed.startedBun).toBe(true);
    const fromSources = launch(tree, ["--help"], { QRX_BUNDLE: "off" }, "exec 1>&-; ");
    expect({ status: closed.status, stderr: closed.stderr }).toEqual({
      status: fromSources.status,
      stderr: fromSources.stderr,
    });
  }, 60_000);

  test("starts Bun when an output is a terminal (commander asks it for width and colours)", () => {
    const tree = copyTreeWithBunLog();
    bundleQvmCopy(tree);
    rmSync(join(tree, "node_modules", "bun.log"), { force: true });
    // script(1) gives the launcher a terminal as its stdout.
    const here = join(tree, "bin");
    const launcher = `program=qvm-copy here='${here}' && set -- --help && . "$here/launch.sh"`;
    const command = `sh -c '${launcher.replaceAll("'", "'\\''")}'`;
    const env = { ...process.env };
    delete env.QRX_PROGRAM_NAME;
    const result = spawnSync("script", ["-qec", command, "/dev/null"], { encoding: "utf8", env });
    expect(result.stdout).toContain(ORIGINAL);
    expect(readFileSync(join(tree, "node_modules", "bun.log"), "utf8")).toContain(
      "qvm-copy.js --help",
    );
  }, 60_000);
});

describe("qrx's commands part", () => {
  /** `qrx ARGS` through its launcher: stdout, and which file Bun ran (from the log). */
  function qrx(tree: string, ...args: string[]): { stdout: string; ran: string } {
    const log = join(tree, "node_modules", "bun.log");
    rmSync(log, { force: true });
    const result = spawnSync(join(tree, "bin", "qrx"), args, { encoding: "utf8" });
    const ran = readFileSync(log, "utf8")
      .split(" ")[0]!
      .replace(/.*\/(bundle|src\/cli)\//, "$1/");
    return { stdout: result.stdout, ran };
  }
  const policyLine = (stdout: string) => stdout.split("\n").find((line) => line.includes("policy"));
  const ORIGINAL_POLICY = "check, evaluate and explain qrexec policy (policy.d and legacy formats)";

  test("is left out of the entry, which loads it for commander's command lines", () => {
    const { tree, entry } = bundledEntry("qrx");
    expect(entry).not.toContain("src/cli/policy-commands.ts");
    expect(entry).toContain("src/cli/plain-run.ts");
    const help = qrx(tree, "help", "policy");
    expect({ ran: help.ran, line: help.stdout.includes(ORIGINAL_POLICY) }).toEqual({
      ran: "bundle/qrx.js",
      line: true,
    });
  }, 60_000);

  test("is checked with the entry: an edit of a module only it holds runs the sources", () => {
    const tree = copyTreeWithBunLog();
    bundleProgram(tree, "qrx");
    expect(qrx(tree, "help", "policy").ran).toBe("bundle/qrx.js");
    const source = join(tree, "src", "cli", "policy-commands.ts");
    writeFileSync(source, readFileSync(source, "utf8").replace(ORIGINAL_POLICY, "policy EDIT"));
    const now = Date.now() / 1000;
    utimesSync(source, now, now);
    const edited = qrx(tree, "--help");
    expect({ ran: edited.ran, line: policyLine(edited.stdout) }).toEqual({
      ran: "src/cli/qrx.ts",
      line: expect.stringContaining("policy EDIT"),
    });
  }, 60_000);

  test("missing, the entry is not run", () => {
    const tree = copyTreeWithBunLog();
    bundleProgram(tree, "qrx");
    expect(qrx(tree, "help", "policy").ran).toBe("bundle/qrx.js");
    rmSync(join(tree, "bundle", "qrx-commands.js"));
    const help = qrx(tree, "help", "policy");
    expect({ ran: help.ran, line: help.stdout.includes(ORIGINAL_POLICY) }).toEqual({
      ran: "src/cli/qrx.ts",
      line: true,
    });
  }, 60_000);
});

test("qrexec-policy-exec's entry leaves commander to its part, which its other forms load", () => {
  const { tree, entry } = bundledEntry("qrexec-policy-exec");
  expect(entry).not.toContain("node_modules/commander/");
  expect(entry).toContain("src/cli/policy-exec-run.ts");
  const part = readFileSync(join(tree, "bundle", "qrexec-policy-exec-commands.js"), "utf8");
  expect(part).toContain("node_modules/commander/");
  const program = join(tree, "bin", "qrexec-policy-exec");
  const result = spawnSync(program, ["--bogus", "--", "work", "vault", "test.A"], {
    encoding: "utf8",
  });
  expect({ status: result.status, stderr: result.stderr }).toEqual({
    status: 1,
    stderr: expect.stringContaining("unknown option '--bogus'"),
  });
  const ran = readFileSync(join(tree, "node_modules", "bun.log"), "utf8").split(" ")[0]!;
  expect(ran).toEndWith("bundle/qrexec-policy-exec.js");
}, 60_000);
