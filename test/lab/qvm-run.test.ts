// dom0's qvm-run in the default lab, as a user types it: through `qrx run dom0` and directly
// with QRX_DIR; the flags of upstream's qvm-run and the exit status of the command.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { QRX, TestLab } from "../helpers/lab.ts";

const QVM_RUN = join(import.meta.dir, "..", "..", "bin", "qvm-run");

describe("qvm-run in dom0", () => {
  const lab = new TestLab();
  beforeAll(() => lab.up(), 30_000);
  afterAll(() => lab.remove());
  const dom0 = (argv: string[], input = "") => lab.run("dom0", ["qvm-run", ...argv], input);

  test("a command in a qube: --pass-io, stdin after the command line, exit status", async () => {
    expect(await dom0(["-p", "work", 'echo "hi from $QRX_DOMAIN_NAME"'])).toEqual({
      code: 0,
      stdout: "hi from work\n",
      stderr: `Running 'echo "hi from $QRX_DOMAIN_NAME"' on work\n`,
    });
    expect(await dom0(["-p", "work", "cat"], "one\ntwo\n")).toMatchObject({
      code: 0,
      stdout: "one\ntwo\n",
    });
    // Arguments after the command stay words (upstream passes them through qubes.VMExec).
    expect(await dom0(["-p", "-q", "work", "printf", "<%s>", "a b", "$HOME"])).toMatchObject({
      stdout: "<a b><$HOME>",
    });
    // Without --pass-io nothing comes back but the status.
    expect(await dom0(["work", "echo lost; exit 3"])).toEqual({
      code: 3,
      stdout: "",
      stderr: "Running 'echo lost; exit 3' on work\nwork: command failed with code: 3\n",
    });
    expect(await dom0(["-q", "work", "exit 4"])).toEqual({ code: 4, stdout: "", stderr: "" });
    // --localcmd: the command's output goes to a local program instead.
    const local = await dom0([
      "-p",
      "-q",
      "--localcmd",
      'read a; echo "local got $a" >&2',
      "work",
      "echo hello",
    ]);
    expect(local).toEqual({ code: 0, stdout: "", stderr: "local got hello\n" });
    expect((await dom0(["--localcmd", "true", "work", "true"])).stderr).toEndWith(
      "qvm-run: error: --localcmd requires --pass-io\n",
    );
  }, 30_000);

  test("--pass-io filters escape characters by default only for a terminal", async () => {
    const red = 'printf "\\033[31mred\\n"';
    const inTerminal = (flags: string) => {
      const command = `${QRX} run --dir ${lab.dir} dom0 -- qvm-run -p -q ${flags} work '${red}'`;
      return spawnSync("script", ["-qec", command, "/dev/null"], { encoding: "utf8" }).stdout;
    };
    expect(inTerminal("")).toBe("_[31mred\r\n");
    expect(inTerminal("--no-filter-escape-chars")).toBe("\x1b[31mred\r\n");
    expect((await dom0(["-p", "-q", "work", red])).stdout).toBe("\x1b[31mred\n");
  }, 30_000);

  test("--service calls a service with its argument; --user is accepted", async () => {
    expect(await dom0(["-p", "-q", "--service", "vault", "test.Add"], "11 22\n")).toMatchObject({
      code: 0,
      stdout: "33\n",
    });
    expect(
      await dom0(["-p", "-q", "--service", "--user", "root", "vault", "test.Whoami"]),
    ).toMatchObject({ code: 0, stdout: "vault\n" });
    expect(await dom0(["-p", "-q", "--service", "vault", "test.Source+5"])).toMatchObject({
      code: 0,
      stdout: "\0".repeat(5),
    });
  }, 30_000);

  test("--no-autostart refuses a halted qube; by default it is started", async () => {
    const refused = await dom0(["--no-autostart", "personal", "true"]);
    expect(refused).toEqual({
      code: 1,
      stdout: "",
      stderr: "qvm-run: error: Qube 'personal' is not running (--no-autostart)\n",
    });
    expect(await dom0(["-p", "-q", "personal", "echo $QRX_DOMAIN_NAME"])).toMatchObject({
      code: 0,
      stdout: "personal\n",
    });
    const status = await lab.status();
    expect(status.domains.find((domain) => domain.name === "personal")!.state).toBe("Running");
  }, 30_000);

  test("--dispvm runs in a new DisposableVM, destroyed after", async () => {
    const result = await dom0(["-p", "--dispvm=default-dvm", "echo $QRX_DOMAIN_NAME; exit 5"]);
    expect(result.code).toBe(5);
    expect(result.stdout).toMatch(/^disp\d+\n$/);
    expect(result.stderr).toContain(`on ${result.stdout.trim()}`);
    const status = await lab.status();
    expect(status.domains.map((domain) => domain.name)).not.toContain(result.stdout.trim());
  }, 30_000);

  test("directly with QRX_DIR; mistakes are named, exit 2 as argparse", async () => {
    const direct = Bun.spawnSync([QVM_RUN, "-p", "vault", "echo $QRX_DOMAIN_NAME"], {
      env: lab.env({ QRX_DIR: lab.dir }),
    });
    expect({ code: direct.exitCode, stdout: direct.stdout.toString() }).toEqual({
      code: 0,
      stdout: "vault\n",
    });
    expect(await dom0(["ghost", "true"])).toEqual({
      code: 2,
      stdout: "",
      stderr: "qvm-run: error: no such domain: 'ghost'\n",
    });
    const bare = await dom0(["work"]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toEndWith(
      "qvm-run: error: the following arguments are required: COMMAND\n",
    );
    const nowhere = Bun.spawnSync([QVM_RUN, "work", "true"], {
      env: lab.env({ QRX_DIR: join(lab.root.path, "none") }),
    });
    expect(nowhere.exitCode).toBe(1);
    expect(nowhere.stderr.toString()).toStartWith("qvm-run: error: cannot connect to qubesd at ");
  }, 30_000);
});
