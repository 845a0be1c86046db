// qfile-agent and qfile-unpacker as native programs (zig/filecopy/cli/, issue 17 target 3):
// bin/ runs them, not Bun, and they say and exit exactly what the Bun programs
// (src/cli/qfile-*.ts) do, case by case. The transfers themselves are the other suites' (they
// run these same launchers).
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdirSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { socketPair } from "../../src/native.ts";
import { tempDir } from "../helpers/paths.ts";
import { BIN, waitFor } from "../helpers/system.ts";

const ROOT = join(import.meta.dir, "..", "..");
const root = tempDir("qrx-fc-native-");
afterAll(() => root.remove());
const home = join(root.path, "home");
mkdirSync(home);
writeFileSync(join(root.path, "one"), "x");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(argv: string[], env: Record<string, string>, input = ""): Promise<Result> {
  const child = Bun.spawn(argv, {
    cwd: root.path,
    env: { PATH: process.env.PATH!, HOME: home, ...env },
    stdin: new TextEncoder().encode(input),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, stdout, stderr };
}

/** The launcher in bin/ and the Bun program, on the same arguments and environment. */
async function both(program: string, args: string[], env: Record<string, string> = {}, input = "") {
  const native = await run([join(BIN, program), ...args], env, input);
  const script = join(ROOT, "src", "cli", `${program}.ts`);
  const bun = await run([process.execPath, script, "--", ...args], env, input);
  return { native, bun };
}

function executable(pid: number): string {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return "";
  }
}

describe("native file-copy programs", () => {
  const programs = ["qfile-unpacker", "qfile-agent"];
  test.each(programs)("bin/%s runs the native program", async (program) => {
    // Each waits on its stdin: the unpacker for the stream, the agent for the receiver's result.
    const [ours, theirs] = socketPair();
    const args = program === "qfile-agent" ? ["one"] : [String(process.getuid!()), root.path];
    const child = Bun.spawn([join(BIN, program), ...args], {
      cwd: root.path,
      stdin: theirs,
      stdout: "ignore",
      stderr: "pipe",
    });
    closeSync(theirs);
    const settled = () => new RegExp(`/${program}$|bun`).test(executable(child.pid));
    await waitFor(settled, `${program} to exec (exe ${executable(child.pid)})`);
    expect(executable(child.pid)).toEndWith(`/zig-out/bin/${program}`);
    closeSync(ours);
    expect(await child.exited).not.toBe(0);
  });

  const uid = String(process.getuid!());
  test.each([
    ["no arguments, no source domain", [], {}],
    ["an unknown option", ["-x"], {}],
    ["too many arguments", ["--", uid, "/d", "more"], {}],
    ["an invalid UID", ["me"], {}],
    ["an invalid legacy UID", ["1x", "/d"], {}],
    ["another user", ["4242", root.path], {}],
    ["a zero margin", ["-w", "0"], {}],
    ["an unsupported option", ["--allow-unsafe-symlinks"], {}],
    ["a legacy extra argument", [uid, root.path, "x"], {}],
    ["a missing directory", [uid, join(root.path, "missing")], {}],
    ["a bad source domain", [], { QREXEC_REMOTE_DOMAIN: ".." }],
    ["an empty stream", ["--verbose"], { QREXEC_REMOTE_DOMAIN: "work" }],
    ["a truncated stream", ["-w1", uid, root.path], {}, "\x01\x00"],
  ] as Array<[string, string[], Record<string, string>, string?]>)(
    "qfile-unpacker, %s: as the Bun program",
    async (_name, args, env, input = "") => {
      const { native, bun } = await both("qfile-unpacker", args, env, input);
      expect(native).toEqual(bun);
    },
  );

  test.each([
    ["no file", [], {}],
    ["an unknown option", ["--ignore-symlinks", "-x", "one"], {}],
    ["an empty name", ["--", ""], {}],
    ["a missing file", ["missing"], {}],
    ["no result from the receiver", ["one"], {}],
    ["a receiver's error code", ["one"], {}, `\x11${"\x00".repeat(15)}`],
    ["a bad GUI fd", ["--", "one"], { PROGRESS_TYPE: "gui", SAVED_FD_1: "99" }],
  ] as Array<[string, string[], Record<string, string>, string?]>)(
    "qfile-agent, %s: as the Bun program",
    async (_name, args, env, input = "") => {
      const { native, bun } = await both("qfile-agent", args, env, input);
      expect(native).toEqual(bun);
    },
  );

  test("the unpacker's own words for a missing directory", async () => {
    const result = await run([join(BIN, "qfile-unpacker"), uid, "/nonexistent/x"], {});
    expect(result.code).toBe(1);
    const words = "qfile-unpacker: Fatal error: Error chdir to /nonexistent/x";
    expect(result.stderr).toBe(`${words} (error type: No such file or directory)\n`);
  });
});

describe("native qvm-copy", () => {
  const tree = join(root.path, "tree");
  mkdirSync(join(tree, "dir"), { recursive: true });
  writeFileSync(join(tree, "dir", "file"), "abc");
  symlinkSync("../../outside", join(tree, "dir", "escape"));
  symlinkSync("dir/file", join(tree, "top"));
  // Not safe for display: qubes.Filecopy+allow-all-names.
  writeFileSync(join(tree, "dir", "bell\x07"), "");
  const noAgent = { QRX_AGENT_SOCKET: join(root.path, "no-agent"), VCHAN_DOMAIN: "2" };

  /** bin/NAME and the Bun program, in `tree`. */
  async function copyBoth(name: string, args: string[], env: Record<string, string> = {}) {
    const base = { QRX_PROGRAM_NAME: name, ...noAgent, ...env };
    const cwd = tree;
    const runIn = async (argv: string[]) => {
      const env = { PATH: process.env.PATH!, HOME: home, ...base };
      const child = Bun.spawn(argv, { cwd, env, stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([
        new Response(child.stdout).text(),
        new Response(child.stderr).text(),
        child.exited,
      ]);
      return { code, stdout, stderr };
    };
    const native = await runIn([join(BIN, name), ...args]);
    const script = join(ROOT, "src", "cli", "qvm-copy.ts");
    const bun = await runIn([process.execPath, script, "--", ...args]);
    return { native, bun };
  }

  test.each([
    ["qvm-copy", "no file", []],
    ["qvm-copy", "--help", ["--help"]],
    ["qvm-copy-to-vm", "-h", ["-h"]],
    ["qvm-copy", "an unknown option", ["--bogus", "dir"]],
    ["qvm-copy-to-vm", "no file after the VM", ["vault"]],
    ["qvm-copy", "'.', '..', '/' and an empty name", [".", "dir/..", "/", ""]],
    ["qvm-copy", "a missing file and a top-level link", ["missing", "top"]],
    ["qvm-copy", "a link out of the tree", ["--without-progress", "dir/"]],
    ["qvm-copy", "links left out, no agent", ["--ignore-symlinks", "dir", "top"]],
    ["qvm-copy-to-vm", "no agent", ["--", "vault", "dir/file"]],
    ["qvm-copy", "an unsafe name, no agent", ["--with-progress", "--ignore-symlinks", "dir"]],
  ])("%s, %s: as the Bun program", async (name, _what, args) => {
    const { native, bun } = await copyBoth(name, args);
    expect(native).toEqual(bun);
  });

  test("bin/qvm-copy runs the native program, and its status is qrexec-client-vm's", async () => {
    // An agent that takes the trigger and never answers holds the call (and qvm-copy) open.
    const agentSocket = join(root.path, "silent-agent");
    const held: Array<{ end: () => void }> = [];
    let received = new Uint8Array(0);
    const listener = Bun.listen({
      unix: agentSocket,
      socket: {
        open: (socket) => void held.push(socket),
        data: (_socket, chunk) => void (received = Buffer.concat([received, chunk])),
      },
    });
    // The whole trigger (its header says how long): hanging up before would reset the client's
    // read (exit 1), not end it (126).
    const triggerIn = () => {
      if (received.length < 8) return false;
      const header = new DataView(received.buffer, received.byteOffset);
      return received.length >= 8 + header.getUint32(4, true);
    };
    try {
      const env = { PATH: process.env.PATH!, HOME: home, QRX_AGENT_SOCKET: agentSocket };
      Object.assign(env, { VCHAN_DOMAIN: "2" });
      const argv = [join(BIN, "qvm-copy"), "dir/file"];
      const child = Bun.spawn(argv, { cwd: tree, env, stdout: "pipe", stderr: "pipe" });
      const settled = () => /\/qvm-copy$|bun/.test(executable(child.pid));
      await waitFor(settled, `qvm-copy to exec (exe ${executable(child.pid)})`);
      expect(executable(child.pid)).toEndWith("/zig-out/bin/qvm-copy");
      await waitFor(triggerIn, "the trigger");
      for (const socket of held) socket.end();
      // The agent hung up without an answer: qrexec-client-vm's "Request refused", 126.
      expect(await child.exited).toBe(126);
      expect(await new Response(child.stderr).text()).toBe("Request refused\n");
    } finally {
      listener.stop(true);
    }
  });
});
