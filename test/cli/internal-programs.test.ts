// qfile-agent and qfile-unpacker take their arguments by hand (they start on every file copy):
// --help answers, and a bad option is one clear line, never a stack trace.
import { expect, test } from "bun:test";
import { join } from "node:path";

const BIN = join(import.meta.dir, "..", "..", "bin");

function run(argv: string[]) {
  const result = Bun.spawnSync(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return {
    code: result.exitCode,
    stdout: result.stdout.toString(),
    stderr: result.stderr.toString(),
  };
}

test("qfile-agent and qfile-unpacker answer --help and -h", () => {
  for (const program of ["qfile-agent", "qfile-unpacker"]) {
    for (const flag of ["--help", "-h"]) {
      const result = run([join(BIN, program), flag]);
      expect({ program, flag, code: result.code, stderr: result.stderr }).toEqual({
        program,
        flag,
        code: 0,
        stderr: "",
      });
      expect(result.stdout).toStartWith(`Usage: ${program} `);
    }
  }
});

// It crashed with a stack trace: the error path used its progress before that existed.
test("qfile-agent with an unknown option says so in one line", () => {
  const result = run([join(BIN, "qfile-agent"), "--bogus"]);
  expect(result.code).toBe(1);
  expect(result.stderr).toBe(
    "qfile-agent: unknown option --bogus\nusage: qfile-agent [--ignore-symlinks] [--] PATH...\n",
  );
});
