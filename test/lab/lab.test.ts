// The lab end to end, through bin/qrx only: real admin service, daemons, agents, policy daemon,
// shared-memory vchans and services.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { processesMentioning, socketsUnder, TestLab } from "../helpers/lab.ts";
import { isRunning } from "../helpers/procfs.ts";
import { waitFor } from "../helpers/system.ts";

describe("a lab's lifecycle", () => {
  test.each(["none", "namespaces"] as const)(
    "up and down twice in a row leave no process, socket or state outside --dir (isolation %s)",
    async (isolation) => {
      const lab = new TestLab();
      try {
        for (let round = 1; round <= 2; round++) {
          await lab.up(undefined, isolation);
          const status = await lab.status();
          expect(status.ready).toBe(true);
          expect(
            status.domains
              .filter((domain) => domain.state === "Running")
              .map((domain) => domain.name),
          ).toEqual(["dom0", "work", "vault"]);
          for (const domain of status.domains.filter(
            (domain) => domain.name === "work" || domain.name === "vault",
          )) {
            expect(domain.agentPid).toBeGreaterThan(0);
            expect(domain.daemonPid).toBeGreaterThan(0);
          }
          const call = await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "11 22\n");
          expect(call).toMatchObject({ code: 0, stdout: "33\n" });
          expect(processesMentioning(lab.dir).length).toBeGreaterThanOrEqual(6);
          await lab.down();
          expect(processesMentioning(lab.dir)).toEqual([]);
          expect(socketsUnder(lab.dir)).toEqual([]);
          for (const gone of ["admin.pid", "admin.sock", "policy.sock", "run", "vchan"])
            expect(existsSync(join(lab.dir, gone))).toBe(false);
          expect(readdirSync(lab.elsewhere)).toEqual([]);
        }
        // Homes and logs stay, as a VM's disk would.
        expect(existsSync(join(lab.dir, "domains", "work", "home"))).toBe(true);
        expect(existsSync(join(lab.dir, "logs", "work.agent.log"))).toBe(true);
      } finally {
        await lab.remove();
      }
    },
    60_000,
  );

  test("a lab whose directory is removed ends itself; a new lab there is left alone", async () => {
    const lab = new TestLab();
    try {
      await lab.up(undefined, "namespaces");
      const oldAdmin = Number(readFileSync(join(lab.dir, "admin.pid"), "utf8"));
      expect(isRunning(oldAdmin)).toBe(true);
      rmSync(lab.dir, { recursive: true, force: true });
      await lab.up(undefined, "namespaces");
      await waitFor(() => !isRunning(oldAdmin), "the old admin to end", 5000);
      // Its shutdown took none of the new lab's files, and its broker no longer sweeps them.
      expect(existsSync(join(lab.dir, "admin.sock"))).toBe(true);
      expect(Number(readFileSync(join(lab.dir, "admin.pid"), "utf8"))).not.toBe(oldAdmin);
      for (let call = 0; call < 20; call++) {
        const result = await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "1 2\n");
        expect(result).toMatchObject({ code: 0, stdout: "3\n" });
      }
      expect(readFileSync(join(lab.dir, "logs", "admin.log"), "utf8")).not.toContain(
        "not a socket of its own",
      );
      await lab.down();
      expect(processesMentioning(lab.dir)).toEqual([]);
    } finally {
      await lab.remove();
    }
  }, 60_000);

  test("two labs side by side do not see each other", async () => {
    const first = new TestLab();
    const second = new TestLab();
    try {
      await Promise.all([first.up(), second.up()]);
      const [a, b] = await Promise.all([
        first.run("work", ["qrexec-client-vm", "vault", "test.Add"], "1 2\n"),
        second.run("work", ["qrexec-client-vm", "vault", "test.Add"], "3 4\n"),
      ]);
      expect(a).toMatchObject({ code: 0, stdout: "3\n" });
      expect(b).toMatchObject({ code: 0, stdout: "7\n" });
      await first.down();
      expect(processesMentioning(first.dir)).toEqual([]);
      const again = await second.run("work", ["qrexec-client-vm", "vault", "test.Add"], "5 6\n");
      expect(again).toMatchObject({ code: 0, stdout: "11\n" });
      const status = await second.status();
      expect(status.domains.find((domain) => domain.name === "vault")!.calls).toBe(2);
    } finally {
      await Promise.all([first.remove(), second.remove()]);
    }
  });

  test("a lab whose admin service was killed is cleaned up by the next lab up", async () => {
    const lab = new TestLab();
    try {
      await lab.up();
      const { adminPid } = await lab.status();
      process.kill(-adminPid, "SIGKILL");
      await waitFor(() => !isRunning(adminPid), "the admin service to die");
      const down = await lab.qrx(["lab", "down"]);
      expect(down.code).toBe(1);
      expect(down.stderr).toContain("cleaned up after one that did not shut down");
      expect(processesMentioning(lab.dir)).toEqual([]);
      await lab.up();
      expect(
        await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "2 2\n"),
      ).toMatchObject({ code: 0, stdout: "4\n" });
    } finally {
      await lab.remove();
    }
  });
});

describe("in the default lab", () => {
  const lab = new TestLab();
  beforeAll(() => lab.up());
  afterAll(() => lab.remove());

  test("test.Add from work to vault, and a denied call (126, Request refused)", async () => {
    expect(await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], "11 22\n")).toEqual({
      code: 0,
      stdout: "33\n",
      stderr: "",
    });
    expect(await lab.run("vault", ["qrexec-client-vm", "work", "test.Add"], "1 2\n")).toEqual({
      code: 126,
      stdout: "",
      stderr: "Request refused\n",
    });
  });

  test("a service in dom0, and dom0 -> VM with qrexec-client", async () => {
    expect(await lab.run("work", ["qrexec-client-vm", "dom0", "test.Echo"], "to dom0\n")).toEqual({
      code: 0,
      stdout: "to dom0\n",
      stderr: "",
    });
    const client = await lab.run("dom0", [
      "qrexec-client",
      "-d",
      "vault",
      "user:echo $QRX_DOMAIN_NAME; exit 3",
    ]);
    expect(client).toMatchObject({ code: 3, stdout: "vault\n" });
    const status = await lab.status();
    expect(status.domains.find((domain) => domain.name === "dom0")!.calls).toBeGreaterThanOrEqual(
      1,
    );
  });

  test("qrx run passes the exit status through, 128+signal, 127 for no command", async () => {
    expect((await lab.run("work", ["sh", "-c", "exit 7"])).code).toBe(7);
    expect((await lab.run("work", ["sh", "-c", "kill -9 $$"])).code).toBe(137);
    const missing = await lab.run("work", ["no-such-command-here"]);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain("cannot run no-such-command-here: command not found");
    const env = await lab.run("vault", ["sh", "-c", 'echo "$VCHAN_DOMAIN $QRX_DOMAIN_NAME $HOME"']);
    expect(env.stdout).toBe(`2 vault ${join(lab.dir, "domains", "vault", "home")}\n`);
  });

  test("$dispvm: a DisposableVM per call, from the template, destroyed, id freed", async () => {
    const before = await lab.status();
    const result = await lab.run("work", ["qrexec-client-vm", "$dispvm", "test.Whoami"]);
    expect(result.code).toBe(0);
    const name = result.stdout.trim();
    expect(name).toMatch(/^disp\d+$/);
    const gone = async () => !(await lab.status()).domains.some((domain) => domain.name === name);
    await waitFor(gone, `${name} to be destroyed`, 5_000);
    const after = await lab.status();
    expect(after.domains.map((domain) => domain.name)).toEqual(
      before.domains.map((domain) => domain.name),
    );
    expect(after.disposablesCreated).toBe(before.disposablesCreated + 1);
    expect(existsSync(join(lab.dir, "domains", name))).toBe(false);
    // @dispvm:TEMPLATE names the template explicitly.
    expect(
      await lab.run("work", ["qrexec-client-vm", "@dispvm:default-dvm", "test.Add"], "20 22\n"),
    ).toMatchObject({ code: 0, stdout: "42\n" });
  });

  test("20 concurrent $dispvm calls: all answered correctly, all destroyed", async () => {
    const calls = Array.from({ length: 20 }, (_, index) =>
      lab.run("work", ["qrexec-client-vm", "$dispvm", "test.Add"], `${index} 1000\n`),
    );
    const results = await Promise.all(calls);
    results.forEach((result, index) =>
      expect(result).toEqual({ code: 0, stdout: `${index + 1000}\n`, stderr: "" }),
    );
    const noDispvm = async () =>
      !(await lab.status()).domains.some((domain) => domain.klass === "DispVM");
    await waitFor(noDispvm, "every DisposableVM to be destroyed", 10_000);
    expect(readdirSync(join(lab.dir, "domains")).filter((name) => name.startsWith("disp"))).toEqual(
      [],
    );
    expect(processesMentioning(join(lab.dir, "domains", "disp"))).toEqual([]);
  }, 60_000);

  test("autostart: a call to a halted domain starts it when the policy says so", async () => {
    expect((await lab.status()).domains.find((domain) => domain.name === "personal")!.state).toBe(
      "Halted",
    );
    expect(await lab.run("work", ["qrexec-client-vm", "personal", "test.Whoami"])).toEqual({
      code: 0,
      stdout: "personal\n",
      stderr: "",
    });
    expect((await lab.status()).domains.find((domain) => domain.name === "personal")!.state).toBe(
      "Running",
    );
    expect(await lab.qrx(["vm", "kill", "personal"])).toMatchObject({
      code: 0,
      stdout: "killed personal\n",
    });
  });

  /** work -> vault test.Add, retried while the killed process is being restarted. */
  async function addOnceUp(input: string) {
    const deadline = Date.now() + 15_000;
    let result = await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], input);
    while (result.code !== 0 && Date.now() < deadline) {
      await Bun.sleep(100);
      result = await lab.run("work", ["qrexec-client-vm", "vault", "test.Add"], input);
    }
    return result;
  }

  test("a killed agent is restarted and the next call works", async () => {
    const before = (await lab.status()).domains.find((domain) => domain.name === "vault")!;
    process.kill(before.agentPid!, "SIGKILL");
    expect(await addOnceUp("5 5\n")).toMatchObject({ code: 0, stdout: "10\n" });
    const after = (await lab.status()).domains.find((domain) => domain.name === "vault")!;
    expect(after.restarts).toBe(before.restarts + 1);
    expect(after.agentPid).not.toBe(before.agentPid);
    expect(after.daemonPid).toBe(before.daemonPid);
    const logs = await lab.qrx(["lab", "logs", "dom0"]);
    expect(logs.stdout).toContain(
      `agent of vault (pid ${before.agentPid}) was killed by SIGKILL; restarting`,
    );
  }, 60_000);

  test("a killed daemon is restarted and re-handshakes with its agent", async () => {
    const before = (await lab.status()).domains.find((domain) => domain.name === "work")!;
    process.kill(before.daemonPid!, "SIGKILL");
    expect(await addOnceUp("6 6\n")).toMatchObject({ code: 0, stdout: "12\n" });
    const after = (await lab.status()).domains.find((domain) => domain.name === "work")!;
    expect(after.daemonPid).not.toBe(before.daemonPid);
    expect(after.agentPid).toBe(before.agentPid);
  }, 60_000);

  test("qrx vm: list, create-disposable, run in it, kill destroys it", async () => {
    const list = await lab.qrx(["vm", "list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^NAME\s+ID\s+CLASS\s+STATE\s+TEMPLATE\n/);
    expect(list.stdout).toMatch(/\nwork\s+1\s+AppVM\s+Running/);
    const created = await lab.qrx(["vm", "create-disposable"]);
    expect(created.code).toBe(0);
    const name = created.stdout.trim();
    expect(name).toMatch(/^disp\d+$/);
    expect((await lab.run(name, ["sh", "-c", "echo $QRX_DOMAIN_NAME"])).stdout).toBe(`${name}\n`);
    expect(
      await lab.run("dom0", ["qrexec-client", "-d", name, "user:echo from $QRX_DOMAIN_NAME"]),
    ).toMatchObject({ code: 0, stdout: `from ${name}\n` });
    expect(await lab.qrx(["vm", "kill", name])).toMatchObject({ code: 0 });
    expect((await lab.status()).domains.some((domain) => domain.name === name)).toBe(false);
    expect(await lab.qrx(["vm", "start", "work"])).toMatchObject({
      code: 0,
      stdout: "work is already running\n",
    });
  });

  test("qrx lab logs: a domain's agent and daemon, dom0's admin and policy daemon", async () => {
    const logs = await lab.qrx(["lab", "logs", "vault"]);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain(`==> ${join(lab.dir, "logs", "vault.agent.log")} <==`);
    expect(logs.stdout).toContain("qrexec-daemon.vault");
    const dom0 = await lab.qrx(["lab", "logs", "dom0"]);
    expect(dom0.stdout).toContain("qrx-admin");
    expect(dom0.stdout).toContain("qrexec-policy-daemon");
  });

  test("qrx lab status names every domain with pid, uptime, calls", async () => {
    const status = await lab.qrx(["lab", "status"]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`lab in ${lab.dir}`);
    expect(status.stdout).toMatch(
      /DOMAIN\s+ID\s+TYPE\s+STATE\s+AGENT\s+DAEMON\s+UPTIME\s+CALLS\s+RESTARTS/,
    );
    expect(status.stdout).toMatch(/\ndefault-dvm\s+4\s+DispVMTemplate\s+Halted/);
    expect(status.stdout).toMatch(/\nvault\s+2\s+AppVM\s+Running\s+\d+\s+\d+\s+[\dhms.]+\s+\d+/);
  });
});

describe("errors name what is wrong and what to do", () => {
  const lab = new TestLab();
  afterAll(() => lab.remove());

  test("without a lab", async () => {
    const hint = `no lab running in ${lab.dir}: run qrx lab up --dir ${lab.dir}\n`;
    for (const args of [
      ["lab", "status"],
      ["vm", "list"],
      ["vm", "start", "work"],
      ["vm", "kill", "work"],
      ["vm", "create-disposable"],
    ]) {
      expect(await lab.qrx(args)).toEqual({ code: 1, stdout: "", stderr: `qrx: ${hint}` });
    }
    expect(await lab.qrx(["lab", "down"])).toEqual({
      code: 1,
      stdout: "",
      stderr: `qrx: no lab running in ${lab.dir}\n`,
    });
    expect(
      await lab.qrx(["run", "work", "--", "true"], { withDir: false, env: { QRX_DIR: lab.dir } }),
    ).toMatchObject({ code: 1, stderr: `qrx: ${hint.replace(` --dir ${lab.dir}`, "")}` });
    expect(await lab.qrx(["lab", "logs"])).toMatchObject({
      code: 1,
      stderr: `qrx: no lab logs in ${lab.dir}: run qrx lab up first\n`,
    });
  });

  test("a state directory too long for unix socket paths is refused up front", async () => {
    const long = join(lab.root.path, "x".repeat(60));
    const result = await lab.qrx(["lab", "up", "--dir", long], { withDir: false });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `qrx: the state directory ${long} is too long for unix socket paths`,
    );
    expect(existsSync(long)).toBe(false);
  });

  test("a bad lab definition stops lab up before anything starts", async () => {
    const config = lab.config('[[domain]]\nname = "work"\ntype = "PVH"\n');
    const result = await lab.qrx(["lab", "up", "--config", config]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `qrx: ${config}:3: domain 'work': type must be one of ` +
        `AppVM, TemplateVM, DispVMTemplate, StandaloneVM, not "PVH"\n`,
    );
    expect(existsSync(join(lab.dir, "admin.pid"))).toBe(false);
    const missing = await lab.qrx(["lab", "up", "--config", "/nonexistent.toml"]);
    expect(missing).toMatchObject({ code: 1, stderr: "qrx: /nonexistent.toml: no such file\n" });
  });

  test("with a lab", async () => {
    const config = lab.config(`
default_dispvm = "dvm"
[[domain]]
name = "one"
services = ["test.Add"]
[[domain]]
name = "off"
start = false
[[domain]]
name = "dvm"
type = "DispVMTemplate"
start = false
`);
    await lab.up(config);
    const again = await lab.qrx(["lab", "up"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(
      new RegExp(
        String.raw`^qrx: a lab is already running in .* \(admin pid \d+\): ` +
          String.raw`qrx lab status shows it, qrx lab down stops it\n$`,
      ),
    );
    expect(await lab.run("nope", ["true"])).toMatchObject({
      code: 1,
      stderr: "qrx: no domain 'nope' in the lab (domains: dom0, one, off, dvm)\n",
    });
    expect(await lab.run("off", ["true"])).toMatchObject({
      code: 1,
      stderr: "qrx: off is not running (Halted): run qrx vm start off\n",
    });
    expect(await lab.run("one", [])).toMatchObject({
      code: 2,
      stderr: "qrx: no command given: qrx run DOMAIN -- COMMAND [ARGS...]\n",
    });
    expect(await lab.qrx(["vm", "start", "nope"])).toEqual({
      code: 1,
      stdout: "",
      stderr: "qrx: no such domain: 'nope'\n",
    });
    expect(await lab.qrx(["vm", "kill", "off"])).toEqual({
      code: 1,
      stdout: "",
      stderr: "qrx: domain off is not running\n",
    });
    expect(await lab.qrx(["vm", "kill", "dom0"])).toEqual({
      code: 1,
      stdout: "",
      stderr: "qrx: dom0 cannot be killed\n",
    });
    expect(await lab.qrx(["vm", "create-disposable", "one"])).toEqual({
      code: 1,
      stdout: "",
      stderr: "qrx: one is not a DisposableVM template\n",
    });
    expect(await lab.qrx(["lab", "logs", "ghost"])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining("qrx: no logs for 'ghost'"),
    });
    // A service the domain does not have: 127 from qrexec-client-vm, as upstream.
    const unknown = await lab.run("one", ["qrexec-client-vm", "dom0", "test.Nothing"]);
    expect(unknown.code).not.toBe(0);
    await lab.down();
  });

  test("--help everywhere, with examples", async () => {
    for (const args of [
      ["lab"],
      ["lab", "up"],
      ["lab", "down"],
      ["lab", "status"],
      ["lab", "logs"],
      ["vm"],
      ["vm", "list"],
      ["vm", "start"],
      ["vm", "kill"],
      ["vm", "create-disposable"],
      ["run"],
      ["demo"],
      ["bench", "dispvm"],
    ]) {
      const help = await lab.qrx([...args, "--help"], { withDir: false });
      expect(help.code).toBe(0);
      expect(help.stdout).toContain("Usage: qrx");
      expect(help.stdout).toMatch(/Examples?:/);
    }
  });
});

describe("a lab on the socket transport (upstream's vchan-socket byte stream)", () => {
  test("calls, DisposableVMs and a policy redirect to @dispvm:TEMPLATE work the same", async () => {
    const lab = new TestLab();
    try {
      await lab.up(
        lab.config(
          `transport = "socket"\ndefault_dispvm = "dvm"\n` +
            `policy = "test.Whoami * a b allow target=@dispvm:dvm\\ntest.Add * @anyvm @anyvm ` +
            `allow\\ntest.Add * @anyvm @dispvm allow\\n"\n[[domain]]\nname = "a"\n[[domain]]\n` +
            `name = "b"\n[[domain]]\nname = "dvm"\ntype = "DispVMTemplate"\nstart = false\n`,
        ),
        // Isolation refuses the socket transport: any process that reaches its sockets can claim
        // any domain id (docs/lab.md).
        "none",
      );
      expect(await lab.run("a", ["qrexec-client-vm", "b", "test.Add"], "1 1\n")).toEqual({
        code: 0,
        stdout: "2\n",
        stderr: "",
      });
      expect(await lab.run("a", ["qrexec-client-vm", "$dispvm", "test.Add"], "2 2\n")).toEqual({
        code: 0,
        stdout: "4\n",
        stderr: "",
      });
      // The policy sends a call meant for b to a new DisposableVM instead.
      const redirected = await lab.run("a", ["qrexec-client-vm", "b", "test.Whoami"]);
      expect(redirected.code).toBe(0);
      expect(redirected.stdout).toMatch(/^disp\d+\n$/);
      expect(readdirSync(join(lab.dir, "vchan")).some((name) => name.startsWith("vchan."))).toBe(
        true,
      );
    } finally {
      await lab.remove();
    }
  });
});
