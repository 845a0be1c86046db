// qfile-agent and qfile-unpacker as upstream's users and tests drive them (issue 15 items 10-14):
// the real programs, wired to each other (or to a hostile fake receiver) through socketpairs.
import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { socketPair } from "../../src/native.ts";
import { parseUnpackerArgs } from "../../src/filecopy/unpacker-args.ts";
import { concat, dirEntry, END, fileEntry, parseResult } from "../helpers/filecopy-stream.ts";
import { tempDir } from "../helpers/paths.ts";
import { BIN } from "../helpers/system.ts";

const AGENT = join(BIN, "qfile-agent");
const UNPACKER = join(BIN, "qfile-unpacker");
const FAKE_RECEIVER = join(import.meta.dir, "..", "helpers", "filecopy-fake-receiver.ts");
const FATAL = "qfile-agent: Fatal error: ";

/** The hostile receiver: answers `code` with its true CRC plus `high` in the field's top half. */
function fakeReceiver(code: number, high: number): string[] {
  return [process.execPath, FAKE_RECEIVER, String(code), String(high)];
}
const root = tempDir("qrx-fc-parity-");
afterAll(() => root.remove());
let counter = 0;

function fresh(name: string): string {
  const path = join(root.path, `${name}-${counter++}`);
  mkdirSync(path);
  return path;
}

interface Pair {
  agent: { status: number; stderr: string };
  receiver: { status: number; stderr: string };
}

async function ended(child: { exited: Promise<number>; stderr: ReadableStream<Uint8Array> }) {
  const [status, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
  return { status, stderr };
}

/** qfile-agent ARGS in `cwd`, its stream going to `receiver` (argv) and the result coming back. */
async function agentTo(args: string[], cwd: string, receiver: string[], prefix: string[] = []) {
  const [agentOut, receiverIn] = socketPair();
  const [receiverOut, agentIn] = socketPair();
  const agentArgv = [...prefix, AGENT, ...args];
  const agent = Bun.spawn(agentArgv, { cwd, stdin: agentIn, stdout: agentOut, stderr: "pipe" });
  const other = Bun.spawn(receiver, { stdin: receiverIn, stdout: receiverOut, stderr: "pipe" });
  for (const fd of [agentOut, receiverIn, receiverOut, agentIn]) closeSync(fd);
  const [agentEnd, receiverEnd] = await Promise.all([ended(agent), ended(other)]);
  const pair: Pair = { agent: agentEnd, receiver: receiverEnd };
  return pair;
}

function unpackerInto(dir: string): string[] {
  return [UNPACKER, String(process.getuid!()), dir];
}

async function receive(stream: Uint8Array, args: string[]) {
  const child = Bun.spawn([UNPACKER, ...args], { stdin: stream, stdout: "pipe", stderr: "pipe" });
  const [raw, end] = await Promise.all([new Response(child.stdout).bytes(), ended(child)]);
  return { ...end, raw, result: raw.length >= 16 ? parseResult(raw) : null };
}

/** The real receiver into a fresh directory, as this user. */
function receiveFresh(stream: Uint8Array) {
  return receive(stream, [String(process.getuid!()), fresh("into")]);
}

describe("qfile-agent's command line (item 10)", () => {
  test("`qfile-agent -- -name` sends -name; `--ignore-symlinks -- --` sends --", async () => {
    const source = fresh("src");
    writeFileSync(join(source, "-name"), "dash");
    writeFileSync(join(source, "--"), "two dashes");
    const into = fresh("into");
    const pair = await agentTo(["--", "-name"], source, unpackerInto(into));
    expect(pair).toEqual({ agent: { status: 0, stderr: "" }, receiver: { status: 0, stderr: "" } });
    expect(readFileSync(join(into, "-name"), "utf8")).toBe("dash");
    const again = await agentTo(["--ignore-symlinks", "--", "--"], source, unpackerInto(into));
    expect(again.agent.status).toBe(0);
    expect(readFileSync(join(into, "--"), "utf8")).toBe("two dashes");
  });

  test("usage errors (no PATH, an empty one, an unknown option): usage and exit 1", async () => {
    for (const args of [[], [""], ["--"], ["--", ""], ["-name"], ["--bogus", "x"]]) {
      const child = Bun.spawn([AGENT, ...args], { stdout: "pipe", stderr: "pipe" });
      const stdoutText = new Response(child.stdout).text();
      const [{ status, stderr }, stdout] = await Promise.all([ended(child), stdoutText]);
      expect({ args, status, stdout }).toEqual({ args, status: 1, stdout: "" });
      expect(stderr).toContain("usage: qfile-agent [--ignore-symlinks] [--] PATH...");
      expect(stderr).not.toContain("Error");
      expect(stderr).not.toContain("    at ");
    }
  });
});

describe("qfile-agent checks the receiver's result as upstream (items 11, 14)", () => {
  test("a CRC field with bit 32 (or bit 63) set is a checksum mismatch: exit 1", async () => {
    const source = fresh("src");
    writeFileSync(join(source, "f"), "content");
    for (const high of [0, 1, 0x80000000]) {
      const pair = await agentTo(["f"], source, fakeReceiver(0, high));
      if (high === 0) {
        expect(pair.agent).toEqual({ status: 0, stderr: "" });
        continue;
      }
      expect({ high, status: pair.agent.status }).toEqual({ high, status: 1 });
      const mismatch = "File transfer failed: checksum mismatch (error type: Success)";
      expect(pair.agent.stderr).toBe(`${FATAL}${mismatch}\n`);
    }
  });

  test("a remote error is reported in upstream's words with (error type: strerror)", async () => {
    const source = fresh("src");
    writeFileSync(join(source, "f"), "x");
    const into = fresh("into");
    writeFileSync(join(into, "f"), "already here");
    const pair = await agentTo(["f"], source, unpackerInto(into));
    expect(pair.receiver.status).toBe(17);
    expect(pair.agent.status).toBe(1);
    expect(pair.agent.stderr).toBe(
      `${FATAL}File copy: not overwriting existing file. ` +
        "Clean QubesIncoming dir, and retry copy; " +
        "Last file: f (error type: File exists)\n",
    );
    const odd = await agentTo(["f"], source, fakeReceiver(2 ** 32 - 84, 0));
    const unknown = 'File copy: "Unknown error -84" (error type: Unknown error -84)';
    expect(odd.agent.stderr).toBe(`${FATAL}${unknown}\n`);
  });

  test("an unreadable local file: exit 1 with its name and the reason", async () => {
    const source = fresh("src");
    writeFileSync(join(source, "secret"), "x", { mode: 0 });
    const into = fresh("into");
    // Root reads anything: run the agent without the capabilities that bypass file modes.
    const drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"];
    const prefix = process.getuid!() === 0 ? drop : [];
    const pair = await agentTo(["secret"], source, unpackerInto(into), prefix);
    expect(pair.agent.status).toBe(1);
    expect(pair.agent.stderr).toBe(`${FATAL}open secret (error type: Permission denied)\n`);
    expect(readdirSync(into)).toEqual([]);
  });
});

/** A 1 MiB tmpfs at a fresh directory, or null where mounting is not allowed. */
function smallDisk(): string | null {
  const path = fresh("disk");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", path], { stdio: "pipe" });
    return path;
  } catch (error) {
    const reason = String(error).split("\n")[0];
    console.log(`filecopy: skipped the wait-for-space test: cannot mount a tmpfs (${reason})`);
    return null;
  }
}

describe("qfile-unpacker as upstream (items 12-14, issue 16 item 5)", () => {
  test("a parent component that fails is named in the reply: ENOTDIR, ENOENT", async () => {
    const cases: Array<[Uint8Array, number, string]> = [
      [concat(fileEntry("f", "file"), fileEntry("f/x", "x"), END), 20, "f"],
      [concat(fileEntry("missing/x", "x"), END), 2, "missing"],
      [concat(dirEntry("d"), fileEntry("d/f", ""), dirEntry("d/f/deeper/e"), END), 20, "f"],
    ];
    for (const [stream, code, last] of cases) {
      const { status, result } = await receiveFresh(stream);
      expect({ status, result }).toMatchObject({ status: code, result: { code, lastName: last } });
    }
  });

  test("a directory the stream made 0000 is not entered, even by root: EACCES (13)", async () => {
    const into = fresh("into");
    // The closing header of a/b sets its mode 0000 before a/b/y comes.
    const closed = dirEntry("a/b", 0);
    const stream = concat(dirEntry("a"), dirEntry("a/b"), closed, fileEntry("a/b/y", "y"), END);
    const received = await receive(stream, [String(process.getuid!()), into]);
    expect(received.status).toBe(13);
    expect(received.result).toMatchObject({ code: 13, lastName: "b" });
    expect(existsSync(join(into, "a/b/y"))).toBe(false);
    // Same for a top directory made 0000 before its child is written.
    const topStream = concat(dirEntry("t"), dirEntry("t", 0), fileEntry("t/y", "y"), END);
    const top = await receiveFresh(topStream);
    expect(top.result).toMatchObject({ code: 13, lastName: "t" });
  });

  test("a directory name that fails validation: (uint32)-84, exit 172, as upstream", async () => {
    for (const name of ["..", "a//b", "tab\tdir"]) {
      const received = await receiveFresh(concat(dirEntry(name), END));
      expect({ name, status: received.status }).toEqual({ name, status: 172 });
      expect(received.result?.code).toBe(2 ** 32 - 84);
    }
    // A file with a bad name stays EILSEQ (84).
    expect((await receiveFresh(concat(fileEntry("a//b", "x"), END))).status).toBe(84);
  });

  test("a DIR that does not exist is not created: upstream's message, exit 1", async () => {
    const missing = join(root.path, `missing-${counter++}`, "deeper");
    const args = [String(process.getuid!()), missing];
    const received = await receive(concat(fileEntry("f", "x"), END), args);
    expect(received.status).toBe(1);
    const reason = "(error type: No such file or directory)";
    const message = `qfile-unpacker: Fatal error: Error chdir to ${missing} ${reason}`;
    expect(received.stderr).toBe(`${message}\n`);
    expect(existsSync(join(missing, ".."))).toBe(false);
  });

  test("-w/--wait-for-space MARGIN is accepted in both command-line forms", async () => {
    expect(parseUnpackerArgs(["--wait-for-space", "4096", "1000", "/d"])).toEqual({
      allowAllNames: false,
      verbose: false,
      waitForSpace: 4096,
      uid: 1000,
      dir: "/d",
    });
    expect(parseUnpackerArgs(["--wait-for-space=7"])).toMatchObject({ waitForSpace: 7 });
    expect(parseUnpackerArgs(["-w", "9", "-v"])).toMatchObject({ waitForSpace: 9, verbose: true });
    expect(parseUnpackerArgs(["-w12"])).toMatchObject({ waitForSpace: 12 });
    const legacy = { uid: 1000, dir: "/d", verbose: true, waitForSpace: 1 };
    expect(parseUnpackerArgs(["1000", "/d", "-v", "-w"])).toMatchObject(legacy);
    expect(parseUnpackerArgs(["1000", "/d", "-w", "5"])).toMatchObject({ waitForSpace: 5 });
    const bads = [["-w", "0"], ["--wait-for-space"], ["-w", "2147483648"], ["--wait-for-space=x"]];
    for (const bad of bads) {
      expect({ bad, parsed: "error" in parseUnpackerArgs(bad) }).toEqual({ bad, parsed: true });
    }
    const into = fresh("into");
    const args = ["--wait-for-space", "1", String(process.getuid!()), into];
    const received = await receive(concat(fileEntry("f", "x"), END), args);
    expect(received.result).toMatchObject({ code: 0, lastName: "f" });
    expect(readFileSync(join(into, "f"), "utf8")).toBe("x");
  });

  test("--wait-for-space waits until the disk has room for the file and the margin", async () => {
    const disk = smallDisk();
    if (disk === null) return;
    try {
      const argv = [UNPACKER, "--wait-for-space", "2000000", String(process.getuid!()), disk];
      const child = Bun.spawn(argv, {
        stdin: concat(fileEntry("f", "x"), END),
        stdout: "pipe",
        stderr: "pipe",
      });
      // 1 MiB cannot hold 2 MB of margin: it must still be waiting (a late check only errs
      // towards passing on a slow machine).
      await Bun.sleep(1500);
      expect(existsSync(join(disk, "f"))).toBe(false);
      expect(child.exitCode).toBeNull();
      execFileSync("mount", ["-o", "remount,size=8m", disk]);
      const [raw, status] = await Promise.all([new Response(child.stdout).bytes(), child.exited]);
      expect(status).toBe(0);
      expect(parseResult(raw)).toMatchObject({ code: 0, lastName: "f" });
      expect(readFileSync(join(disk, "f"), "utf8")).toBe("x");
    } finally {
      execFileSync("umount", ["-l", disk]);
    }
  });
});
