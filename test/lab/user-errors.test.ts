// The mistakes a user makes first, and what they are told: a broken lab policy, qrx run's options
// after the domain, a refused call explained with -v, a typo in a VM name, qrexec-client's help
// and its -w, and qrx conformance's usage errors.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { splitRunArguments } from "../../src/lab/run-arguments.ts";
import { QRX, TestLab } from "../helpers/lab.ts";

const BIN = join(import.meta.dir, "..", "..", "bin");

describe("a lab whose policy has errors", () => {
  test("does not come up and says where the errors are; --allow-broken-policy warns", async () => {
    const lab = new TestLab();
    try {
      const config = lab.config(
        'policy = """\ntest.Add * work vault allow\ntest.Echo * work\n"""\n[[domain]]\n' +
          'name = "work"\n[[domain]]\nname = "vault"\n',
      );
      const refused = await lab.qrx(["lab", "up", "--config", config]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        "qrx: the lab's policy has errors, so the lab was not brought up:\n",
      );
      expect(refused.stderr).toMatch(/50-lab\.policy:2: wrong number of fields/);
      expect(refused.stderr).toContain("or bring the lab up anyway with --allow-broken-policy");
      expect(existsSync(join(lab.dir, "admin.pid"))).toBe(false);
      const loud = await lab.qrx(["lab", "up", "--config", config, "--allow-broken-policy"]);
      expect(loud.code).toBe(0);
      expect(loud.stderr).toMatch(
        new RegExp(
          String.raw`WARNING: --allow-broken-policy: ` +
            String.raw`the lab's policy has errors and DENIES EVERY CALL` +
            String.raw`[^\n]*\n.*50-lab\.policy:2:`,
        ),
      );
      expect(
        await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "1 2\n"),
      ).toMatchObject({ code: 126 });
    } finally {
      await lab.remove();
    }
  }, 30_000);
});

describe("qrx run's options", () => {
  test("after the domain: taken before --, anything else named", () => {
    expect(splitRunArguments(["--dir", "/x", "-v", "--", "cmd", "-v"])).toEqual({
      dir: "/x",
      verbose: true,
      trace: undefined,
      argv: ["cmd", "-v"],
    });
    expect(splitRunArguments(["--dir=/x", "cmd", "--dir", "y"])).toEqual({
      dir: "/x",
      verbose: false,
      trace: undefined,
      argv: ["cmd", "--dir", "y"],
    });
    expect(splitRunArguments(["cmd", "-v"])).toEqual({
      dir: undefined,
      verbose: false,
      trace: undefined,
      argv: ["cmd", "-v"],
    });
    expect(splitRunArguments(["--trace", "/t", "--", "cmd", "--trace", "u"])).toEqual({
      dir: undefined,
      verbose: false,
      trace: "/t",
      argv: ["cmd", "--trace", "u"],
    });
    expect(splitRunArguments(["--trace=/t", "--", "cmd"])).toMatchObject({ trace: "/t" });
    const usage = "qrx run [--dir DIR] [-v] [--trace FILE] DOMAIN -- COMMAND [ARGS...]";
    expect(splitRunArguments(["--trace", "--", "cmd"])).toBe(
      `option '--trace <file>' needs a file: ${usage}`,
    );
    expect(splitRunArguments(["--user", "root", "--", "id"])).toBe(
      `'--user' before -- is not an option of qrx run; the command goes after --: ${usage}`,
    );
  });
});

describe("in a running lab", () => {
  const lab = new TestLab();
  beforeAll(() => lab.up(), 30_000);
  afterAll(() => lab.remove());

  test("qrx run DOMAIN --dir X -- works; a wrong option says where options go", async () => {
    const call = await lab.qrx(
      ["run", "work", "--dir", lab.dir, "--", "qrexec-client-vm", "vault", "test.Add"],
      { input: "2 2\n", withDir: false },
    );
    expect(call).toMatchObject({ code: 0, stdout: "4\n" });
    const wrong = await lab.qrx(["run", "work", "--bogus", "--", "true"], { withDir: false });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain(
      "qrx: '--bogus' before -- is not an option of qrx run; the command goes after --",
    );
  }, 30_000);

  test("a refused call: upstream's words; with -v the rule and the explain command", async () => {
    const plain = await lab.run("vault", ["qrexec-client-vm", "work", "test.Add"], "1 2\n");
    expect(plain).toEqual({ code: 126, stdout: "", stderr: "Request refused\n" });
    const verbose = await lab.qrx(
      ["run", "-v", "vault", "--", "qrexec-client-vm", "work", "test.Add"],
      { input: "1 2\n", withDir: false, env: { QRX_DIR: lab.dir } },
    );
    expect(verbose.code).toBe(126);
    expect(verbose.stderr).toMatch(
      new RegExp(
        String.raw`^Request refused\n` +
          String.raw`qrx: the policy refused vault -> work test.Add\+, ` +
          String.raw`by \S+50-lab.policy:(\d+):\n` +
          String.raw`qrx:   \* +\* +@anyvm +@anyvm +deny\n`,
      ),
    );
    expect(verbose.stderr).toContain(
      "qrx: every rule considered: qrx run dom0 -- qrx policy explain vault work test.Add+\n",
    );
    const explain = await lab.run("dom0", [
      "qrx",
      "policy",
      "explain",
      "vault",
      "work",
      "test.Add+",
    ]);
    expect(explain.stdout + explain.stderr).toContain("50-lab.policy");
  }, 30_000);

  test("qvm-copy-to-vm to a VM that does not exist: unknown name, the policy decides", async () => {
    const file = join(lab.dir, "domains", "work", "home", "typo.txt");
    writeFileSync(file, "x\n");
    const copy = await lab.run("work", ["qvm-copy-to-vm", "valut", file]);
    expect(copy.code).toBe(0); // the lab's policy sends work's @default copies to vault
    expect(copy.stderr).toContain(
      "qrx: target 'valut' does not exist, using @default (no domain " +
        "'valut' in the lab: dom0's policy decided where the call went)",
    );
    const logs = await lab.qrx(["lab", "logs", "dom0"]);
    expect(logs.stdout).toContain("work -> valut: target 'valut' does not exist, using @default");
  }, 30_000);

  test("qrexec-client: --help once, -w names a bad value, its examples work", async () => {
    const help = Bun.spawnSync([join(BIN, "qrexec-client"), "--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString().match(/Usage:/g)).toHaveLength(1);
    const bad = Bun.spawnSync([join(BIN, "qrexec-client"), "-w", "abc", "-d", "work", "user:true"]);
    expect({ code: bad.exitCode, stderr: bad.stderr.toString() }).toEqual({
      code: 1,
      stderr: "qrexec-client: Invalid connection timeout: abc\n",
    });
    const examples = help.stdout
      .toString()
      .split("\n")
      .filter((line) => line.startsWith("  qrexec-client "));
    expect(examples.length).toBe(3);
    for (const example of examples) {
      const result = await lab.run("dom0", ["bash", "-c", example.trim()]);
      expect({ example, code: result.code, stderr: result.stderr }).toEqual({
        example,
        code: 0,
        stderr: "",
      });
    }
  }, 30_000);
});

test("qrx conformance --role with a typo exits 2, as its help says", () => {
  const result = Bun.spawnSync([QRX, "conformance", "--role", "agnet"]);
  expect(result.exitCode).toBe(2);
  expect(result.stderr.toString()).toContain("argument 'agnet' is invalid");
  expect(Bun.spawnSync([QRX, "conformance", "--help"]).exitCode).toBe(0);
});
