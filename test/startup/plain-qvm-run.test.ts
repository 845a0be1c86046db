// qvm-run's fast path (src/cli/qvm-run-plain.ts) takes only command lines that commander's
// qvm-run (src/cli/qvm-run-command.ts) reads the same way: checked against commander itself.
import { describe, expect, test } from "bun:test";
import type { QvmRunOptions } from "../../src/admin/qvm-run.ts";
import { optionsOf, qvmRunCommand } from "../../src/cli/qvm-run-command.ts";
import { plainQvmRun } from "../../src/cli/qvm-run-plain.ts";

/** What commander's qvm-run would run for ARGS, or null when it would not run. */
function commanderRun(args: string[], terminal: boolean): QvmRunOptions | null {
  const program = qvmRunCommand().configureOutput({ writeOut: () => {}, writeErr: () => {} });
  try {
    program.parse(["bun", "qvm-run", ...args]);
  } catch {
    return null;
  }
  const options = optionsOf(program, terminal);
  return "usage" in options ? null : options;
}

const PLAIN = [
  ["work", "true"],
  ["-p", "work", "echo hi"],
  ["--pass-io", "-q", "-q", "work", "cat", "a b"],
  ["-p", "--no-gui", "vault", "ls", "-l"],
  ["-n", "-a", "work", "true"],
  ["-a", "-n", "work", "true"],
  ["--no-autostart", "personal", "true"],
  ["--service", "-p", "vault", "test.Add+1"],
  ["--no-shell", "-p", "work", "printf", "%s", "$HOME"],
  ["-v", "--verbose", "-q", "work", "true"],
  ["-p", "--no-filter-escape-chars", "work", "x"],
  ["--filter-escape-chars", "work", "x"],
  ["--no-filter-escape-chars", "--filter-escape-chars", "-p", "work", "x"],
  ["work", "--", "ls"],
  ["work", "-p", "x"],
  ["--gui", "--nogui", "work", "x"],
];
const OTHERS = [
  [],
  ["work"],
  ["-p", "work"],
  ["-pq", "work", "x"],
  ["-u", "root", "work", "x"],
  ["--user=root", "work", "x"],
  ["--dispvm", "x"],
  ["--dispvm=default-dvm", "x"],
  ["--", "work", "x"],
  ["--help"],
  ["-h", "work", "x"],
  ["--localcmd", "cat", "-p", "work", "x"],
  ["--auto", "work", "x"],
  ["--no-auto", "work", "x"],
  ["", "x"],
  ["-p", "--bogus", "work", "x"],
  ["-", "work", "x"],
];

describe("qvm-run without commander", () => {
  for (const terminal of [false, true]) {
    test.each(PLAIN.map((args) => [args]))(
      `takes %j as commander reads it (terminal ${terminal})`,
      (args) => {
        const fast = plainQvmRun(args, terminal);
        expect(fast).not.toBeNull();
        expect(fast).toEqual(commanderRun(args, terminal));
      },
    );
  }

  test.each(OTHERS.map((args) => [args]))("leaves %j to commander", (args) => {
    expect(plainQvmRun(args, false)).toBeNull();
  });
});
