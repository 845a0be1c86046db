// The native qrexec-client (zig/dom0_client/, issue 17 target 1): a dom0 -> VM call runs in it,
// not in Bun, and does exactly what the Bun CLI does (QRX_CLIENT_NATIVE=off forces that one):
// the same output, messages and exit codes, for calls that work and for daemons that refuse or
// misbehave (a raw-frame daemon plays those). Every other command line runs the Bun CLI.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readlinkSync } from "node:fs";
import { join } from "node:path";
import { RawPeer } from "../../src/conformance/wire.ts";
import { MSG_EXEC_CMDLINE, MSG_HELLO } from "../../src/protocol/constants.ts";
import { BIN, QrexecSystem, waitFor, type RunResult } from "../helpers/system.ts";

let system: QrexecSystem;
const CLIENT = join(BIN, "qrexec-client");

beforeAll(async () => {
  system = new QrexecSystem("shm");
  await system.startVm(3, "vault");
  system.service("vault", "test.Cat", "exec cat");
  system.service("vault", "test.Mixed", "echo out; echo err >&2; exit 3");
  system.service("vault", "test.Unsafe", "printf 'a\\033[31mb\\n'; printf 'c\\001d\\n' >&2");
  system.service("vault", "test.Big", "head -c 1048576 /dev/zero | tr '\\0' x");
});

afterAll(async () => {
  await system.stop();
});

function client(args: string[], input = "", env: Record<string, string> = {}): Promise<RunResult> {
  return system.run(0, [CLIENT, `--socket-dir=${system.socketDir}`, ...args], input, env);
}

/** The same command line through the native program and through the Bun CLI. */
async function both(args: string[], input = ""): Promise<{ native: RunResult; bun: RunResult }> {
  const native = await client(args, input);
  const bun = await client(args, input, { QRX_CLIENT_NATIVE: "off" });
  return { native, bun };
}

function executable(pid: number): string {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return "";
  }
}

describe("native qrexec-client", () => {
  test("a dom0 -> VM call runs in the native program; -l runs the Bun CLI", async () => {
    const args = [`--socket-dir=${system.socketDir}`, "-d", "vault"];
    const native = system.spawn(0, [CLIENT, ...args, "DEFAULT:QUBESRPC test.Cat dom0"]);
    // The launcher (a shell script) execs the native program or, on a fallback, Bun.
    const settled = (pid: number) => /\/qrexec-client$|bun/.test(executable(pid));
    await waitFor(() => settled(native.pid), `the launcher's exec (exe ${executable(native.pid)})`);
    expect(executable(native.pid)).toEndWith("/zig-out/bin/qrexec-client");
    native.stdin.write("through\n");
    native.stdin.end();
    expect(await new Response(native.stdout).text()).toBe("through\n");
    expect(await native.exited).toBe(0);

    const withLocal = [CLIENT, ...args, "-l", "true", "DEFAULT:QUBESRPC test.Cat dom0"];
    const local = system.spawn(0, withLocal);
    await waitFor(() => /bun/.test(executable(local.pid)), `Bun (exe ${executable(local.pid)})`);
    local.stdin.end();
    expect(await local.exited).toBe(0);
  });

  test.each([
    ["an exit status, stdout and stderr", ["-d", "vault", "DEFAULT:QUBESRPC test.Mixed dom0"], ""],
    ["-E", ["-E", "-d", "vault", "DEFAULT:QUBESRPC test.Mixed dom0"], ""],
    ["-t and -T", ["-t", "-T", "-d", "vault", "DEFAULT:QUBESRPC test.Unsafe dom0"], ""],
    ["no filter", ["-dvault", "DEFAULT:QUBESRPC test.Unsafe dom0"], ""],
    ["-p", ["-dvault", "--prefix-data=head:", "-w", "0", "user:cat"], "tail\n"],
    ["a missing service", ["-d", "vault", "DEFAULT:QUBESRPC test.Missing dom0"], ""],
    ["a shell command", ["-d", "vault", "user:echo $((6*7))"], ""],
    ["1 MiB of output", ["-d", "vault", "DEFAULT:QUBESRPC test.Big dom0"], ""],
    ["no daemon", ["-d", "nosuch", "DEFAULT:QUBESRPC test.Cat dom0"], ""],
    ["a usage error", ["-d", "vault", "-w", "x", "DEFAULT:QUBESRPC test.Cat dom0"], ""],
  ])("%s: as the Bun CLI", async (_name, args, input) => {
    const { native, bun } = await both(args, input);
    expect(native).toEqual(bun);
  });

  test("the results those give are the expected ones", async () => {
    expect(await client(["-d", "vault", "DEFAULT:QUBESRPC test.Mixed dom0"])).toEqual({
      code: 3,
      stdout: "out\n",
      stderr: "err\n",
    });
    const cat = "DEFAULT:QUBESRPC test.Cat dom0";
    const prefixed = await client(["-d", "vault", "-p", "head:", cat], "tail\n");
    expect(prefixed.stdout).toBe("head:tail\n");
    const filtered = await client(["-t", "-T", "-d", "vault", "DEFAULT:QUBESRPC test.Unsafe dom0"]);
    expect(filtered.stdout).toBe("a_[31mb\n");
    expect(filtered.stderr).toBe("c_d\n");
    const big = await client(["-d", "vault", "DEFAULT:QUBESRPC test.Big dom0"]);
    expect(big.stdout).toBe("x".repeat(1 << 20));
  });

  test("a closed fd 0 is refused with 125, as upstream", async () => {
    const line = `exec <&- "${CLIENT}" --socket-dir="${system.socketDir}" -d vault user:true`;
    const result = await system.run(0, ["sh", "-c", line]);
    const stderr = "qrexec-client: File descriptor 0 is closed, cannot continue\n";
    expect(result).toEqual({ code: 125, stdout: "", stderr });
  });
});

describe("native qrexec-client against a raw daemon", () => {
  /** A daemon at `qrexec.<name>` that says HELLO, reads the request, then does `answer`. */
  function fakeDaemon(name: string, answer: (peer: RawPeer) => void) {
    const listener = RawPeer.listen(join(system.socketDir, `qrexec.${name}`));
    const serve = async (): Promise<void> => {
      const peer = await listener.next();
      peer.sendHello(3);
      await peer.receiveHello();
      await peer.receive();
      answer(peer);
      void serve();
    };
    void serve();
    return listener;
  }

  const reply = (type: number, payload: number[]) => (peer: RawPeer) => {
    peer.send(type, Uint8Array.from(payload));
  };
  const port600 = [9, 0, 0, 0, 0x58, 2, 0, 0];

  test.each([
    [
      "closes without a port",
      (peer: RawPeer) => peer.close(),
      /refused the command: daemon closed the connection/,
    ],
    [
      "replies with another type",
      reply(MSG_HELLO, [3, 0, 0, 0, 0, 2, 0, 0]),
      /unexpected daemon reply type 0x300 len 8/,
    ],
    [
      "announces too much",
      reply(MSG_EXEC_CMDLINE, [3, 0, 0, 0, 0, 2, 0, 0, 0]),
      /announces 9 bytes, limit 8/,
    ],
    // Nobody connects to the data vchan: -w 1 gives up after a second.
    [
      "allocates a port nobody uses",
      reply(MSG_EXEC_CMDLINE, port600),
      /vchan server 0<-9:600 \(client\)/,
    ],
  ])("a daemon that %s: the same message and 125 as the Bun CLI", async (name, answer, message) => {
    const daemonName = `fake-${name.replaceAll(" ", "-")}`;
    const listener = fakeDaemon(daemonName, answer);
    try {
      const { native, bun } = await both(["-w", "1", "-d", daemonName, "user:true"]);
      expect(native).toEqual(bun);
      expect(native.code).toBe(125);
      expect(native.stderr).toMatch(message);
    } finally {
      listener.stop();
    }
  });
});
