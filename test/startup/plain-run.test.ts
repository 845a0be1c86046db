// `qrx run`'s fast path (src/cli/plain-run.ts) takes only command lines that commander's `qrx run`
// reads the same way: checked against commander itself, set up as qrx-commands.ts sets it up.
import { describe, expect, test } from "bun:test";
import { Command } from "commander";
import { addLabCommands } from "../../src/cli/lab-commands.ts";
import { plainRun, type PlainRun } from "../../src/cli/plain-run.ts";

/** What commander's `qrx run` action gets for ARGS, or null when it would not run. */
function commanderRun(args: string[]): PlainRun | null {
  const program = new Command("qrx").exitOverride().showHelpAfterError().enablePositionalOptions();
  program.configureOutput({ writeOut: () => {}, writeErr: () => {} });
  addLabCommands(program);
  let seen: PlainRun | null = null;
  program.commands
    .find((command) => command.name() === "run")!
    .action((domain: string, command: string[], options: { dir?: string }) => {
      seen = { domain, command, dir: options.dir };
    });
  try {
    program.parse(["bun", "qrx", ...args]);
  } catch {
    return null;
  }
  return seen;
}

const PLAIN = [
  ["run", "work", "--", "true"],
  ["run", "work", "true", "a b"],
  ["run", "--dir", "/tmp/lab", "work", "--", "sh", "-c", "exit 3"],
  ["run", "--dir=/tmp/lab", "vault", "qrexec-client-vm", "work", "test.Echo"],
  ["run", "work", "--", "--help"],
  ["run", "work", "--help"],
  ["run", "work", "--dir", "/x", "true"],
];
const OTHERS = [
  ["run"],
  ["run", "-h"],
  ["run", "--help"],
  ["run", "work"],
  ["run", "work", "--"],
  ["run", "--", "work", "true"],
  ["run", "--dir", "work", "true"],
  ["run", "--dir", "-x", "work", "true"],
  ["run", "--dir=", "work", "true"],
  ["run", "--dir", "/a", "--dir", "/b", "work", "true"],
  ["run", "", "true"],
  ["lab", "status"],
  ["--help"],
  [],
];

describe("qrx run without commander", () => {
  test.each(PLAIN.map((args) => [args]))("takes %j as commander reads it", (args) => {
    const fast = plainRun(args);
    expect(fast).not.toBeNull();
    expect(fast).toEqual(commanderRun(args));
  });

  test.each(OTHERS.map((args) => [args]))("leaves %j to commander", (args) => {
    expect(plainRun(args)).toBeNull();
  });
});
