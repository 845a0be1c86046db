// The clients' flags and usage errors (§9, §10): prefix data, filtering, JUST_EXEC, buffer size,
// refusing bad requests before anything is sent, and upstream's exit codes for bad usage.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { memfdBytes } from "../helpers/procfs.ts";
import { BIN, QrexecSystem, waitFor } from "../helpers/system.ts";

let system: QrexecSystem;

beforeAll(async () => {
  system = new QrexecSystem("shm");
  await system.startVm(2, "work");
  await system.startVm(3, "vault");
  system.service("vault", "test.Cat", "cat");
  system.service(
    "vault",
    "test.Escape",
    "printf 'a\\033[31mb\\tc\\001\\n'; printf 'e\\033x\\n' >&2",
  );
  system.service("vault", "test.Touch", `echo "$QREXEC_REMOTE_DOMAIN" > "${system.dir.path}/$1"`);
  system.policy("* work vault allow");
});

afterAll(async () => {
  await system.stop();
});

describe("qrexec-client-vm flags", () => {
  test("--prefix-data goes first, then stdin", async () => {
    const result = await system.clientVm(
      "work",
      ["--prefix-data=first ", "vault", "test.Cat"],
      "second\n",
    );
    expect(result.stdout).toBe("first second\n");
  });

  test("-t and -T replace unsafe characters; without them bytes pass as they are", async () => {
    const filtered = await system.clientVm("work", ["-t", "-T", "vault", "test.Escape"]);
    expect(filtered.stdout).toBe("a_[31mb\tc_\n");
    expect(filtered.stderr).toBe("e_x\n");
    const raw = await system.clientVm("work", ["vault", "test.Escape"]);
    expect(raw.stdout).toBe("a\x1b[31mb\tc\x01\n");
  });

  test("--buffer-size sets the ring: 1 KiB still moves 1 MiB intact", async () => {
    const input = "0123456789abcdef".repeat(65536);
    const result = await system.clientVm(
      "work",
      ["--buffer-size=1024", "vault", "test.Cat"],
      input,
    );
    expect(result.code).toBe(0);
    expect(result.stdout.length).toBe(input.length);
    expect(result.stdout === input).toBe(true);
  });

  test("rings: 128 KiB each way by default, else what --buffer-size asks", async () => {
    const vault = system.vms.get("vault")!.agent.pid;
    const page = 4096;
    for (const [args, bytes] of [
      [[], page + 2 * 131072],
      [["--buffer-size=65536"], page + 2 * 65536],
      [["--buffer-size=1024"], page],
    ] as const) {
      const before = memfdBytes(vault);
      const child = system.spawnClientVm("work", [...args, "vault", "test.Cat"]);
      let added: number[] = [];
      await waitFor(() => {
        added = [...memfdBytes(vault)]
          .filter(([inode]) => !before.has(inode))
          .map(([, size]) => size);
        return added.length > 0;
      }, "the call's data vchan in vault's agent");
      child.stdin.write("x\n");
      await child.stdin.end();
      expect(await new Response(child.stdout).text()).toBe("x\n");
      expect(await child.exited).toBe(0);
      expect(added, `qrexec-client-vm ${args.join(" ")}`).toEqual([bytes]);
    }
  });

  test("a bad --buffer-size exits 1 before calling", async () => {
    const result = await system.clientVm("work", ["--buffer-size=x12", "vault", "test.Cat"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/invalid buffer size/);
  });

  test("a bad service name is refused locally with a clear message, nothing sent", async () => {
    const before = readFileSync(system.policyLog, "utf8").length;
    const result = await system.clientVm("work", ["vault", "+arg"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/must not start with '\+'/);
    expect(readFileSync(system.policyLog, "utf8").length).toBe(before);
  });

  test("usage errors exit 2; --help exits 0 on stdout", async () => {
    const missing = await system.clientVm("work", ["vault"]);
    expect(missing.code).toBe(2);
    const help = await system.clientVm("work", ["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: qrexec-client-vm/);
    const twice = await system.clientVm("work", ["-p", "a", "-p", "b", "vault", "test.Cat"]);
    expect(twice.code).toBe(2);
  });

  test("the local program does not run when the call is refused", async () => {
    const marker = join(system.dir.path, "should-not-exist");
    const result = await system.clientVm("work", [
      "work",
      "test.Cat",
      "/bin/sh",
      "-c",
      `touch ${marker}`,
    ]);
    expect(result.code).toBe(126);
    expect(await Bun.file(marker).exists()).toBe(false);
  });

  test("no agent: a clear error, exit 1", async () => {
    const result = await system.run(2, [
      join(BIN, "qrexec-client-vm"),
      "--agent-socket=/nonexistent/agent",
      "vault",
      "test.Cat",
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/cannot connect to the qrexec agent at \/nonexistent\/agent/);
  });
});

describe("qrexec-client flags", () => {
  test("-e (JUST_EXEC) starts the command and exits 0 at once", async () => {
    const touched = join(system.dir.path, "touched");
    const result = await system.client([
      "-e",
      "-d",
      "vault",
      "DEFAULT:QUBESRPC test.Touch+touched dom0",
    ]);
    expect(result.code).toBe(0);
    // The file exists before its line is in it: wait for the content, not the name.
    const contentOf = (path: string) => (Bun.file(path).size > 0 ? readFileSync(path, "utf8") : "");
    await waitFor(() => contentOf(touched) === "dom0\n", "test.Touch's line");
    const marker = join(system.dir.path, "just-exec");
    const direct = await system.client(["-e", "-d", "vault", `user:echo done > ${marker}`]);
    expect(direct.code).toBe(0);
    await waitFor(() => contentOf(marker) === "done\n", "the command's line");
  });

  test("--prefix-data and -l with a local program", async () => {
    const result = await system.client([
      "-d",
      "vault",
      "-p",
      "pre:",
      "-l",
      "echo local-out; exec 1>&-; cat >&2",
      "DEFAULT:QUBESRPC test.Cat dom0",
    ]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe("pre:local-out\n");
  });

  test("-E exits 0 whatever the remote status", async () => {
    const result = await system.client(["-E", "-d", "vault", "user:exit 9"]);
    expect(result.code).toBe(0);
    const plain = await system.client(["-d", "vault", "user:exit 9"]);
    expect(plain.code).toBe(9);
  });

  test("unknown options: usage on stdout, exit 0 (upstream's getopt); no command: 1", async () => {
    const unknown = await system.client(["--bogus"]);
    expect(unknown.code).toBe(0);
    expect(unknown.stdout).toMatch(/Usage: qrexec-client/);
    const noCommand = await system.client(["-d", "vault"]);
    expect(noCommand.code).toBe(1);
  });

  test("a VM without a daemon: 125 with the reason", async () => {
    const result = await system.client(["-d", "nosuchvm", "user:true"]);
    expect(result.code).toBe(125);
    expect(result.stderr).toMatch(/cannot connect to the qrexec daemon of nosuchvm/);
  });
});
