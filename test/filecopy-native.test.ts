// The qubes.Filecopy stream engine (zig/filecopy) through its TypeScript wrappers: the spec's
// worked example (§2.9) both ways, round trips of real trees with the receiver in a child
// process, the receiver's refusals and truncation rules, the sender's CRC check, a full disk.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import {
  LEGAL_EOF,
  packStream,
  safeForDisplay,
  socketPair,
  unpackStream,
  validateFilecopyPath,
  validateFilecopySymlink,
} from "../src/native.ts";
import { tempDir } from "./helpers/paths.ts";

const bun = process.execPath;
const nativeTs = join(import.meta.dir, "..", "src", "native.ts");
const EILSEQ = 84;
const ENOLINK = 67;
const EEXIST = 17;
const EREMOTEIO = 121;
const ENOSPC = 28;

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir("qrx-fc-");
});
afterEach(() => {
  dir.remove();
});

// ---------------------------------------------------------------------------- stream builder

function header(
  namelen: number,
  mode: number,
  filelen: bigint | number,
  t: Partial<Times> = {},
): Uint8Array {
  const bytes = new Uint8Array(32);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, namelen, true);
  view.setUint32(4, mode, true);
  view.setBigUint64(8, BigInt(filelen), true);
  view.setUint32(16, t.atime ?? 1700000000, true);
  view.setUint32(20, t.atimeNsec ?? 0, true);
  view.setUint32(24, t.mtime ?? 1700000000, true);
  view.setUint32(28, t.mtimeNsec ?? 0, true);
  return bytes;
}

interface Times {
  atime: number;
  atimeNsec: number;
  mtime: number;
  mtimeNsec: number;
}

class StreamBuilder {
  parts: Uint8Array[] = [];
  entry(
    name: string | Uint8Array,
    mode: number,
    payload: string | Uint8Array = "",
    t: Partial<Times> = {},
  ): this {
    const nameBytes = typeof name === "string" ? new TextEncoder().encode(name) : name;
    const body = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    this.parts.push(
      header(nameBytes.length + 1, mode, body.length, t),
      nameBytes,
      new Uint8Array([0]),
      body,
    );
    return this;
  }
  dir(name: string, t: Partial<Times> = {}): this {
    return this.entry(name, 0o40755, "", t);
  }
  file(
    name: string | Uint8Array,
    content: string | Uint8Array,
    mode = 0o100644,
    t: Partial<Times> = {},
  ): this {
    return this.entry(name, mode, content, t);
  }
  link(name: string, target: string): this {
    return this.entry(name, 0o120777, target);
  }
  end(): this {
    this.parts.push(new Uint8Array(32));
    return this;
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

function workedExample(): Uint8Array {
  return new StreamBuilder()
    .dir("d")
    .file("d/a.txt", "hi\n", 0o100644, { atimeNsec: 5, mtimeNsec: 7 })
    .dir("d")
    .end()
    .bytes();
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** Runs the receiver in this process on a stream held in a file; returns its reply bytes. */
function unpackBytes(
  stream: Uint8Array,
  target: string,
  options: { allowAllNames?: boolean } = {},
) {
  const inPath = join(dir.path, `in-${Math.random()}`);
  const outPath = join(dir.path, `out-${Math.random()}`);
  writeFileSync(inPath, stream);
  writeFileSync(outPath, "");
  const inFd = openSync(inPath, "r");
  const outFd = openSync(outPath, "w");
  const dirFd = openSync(target, "r");
  try {
    const result = unpackStream({ inFd, outFd, dirFd, ...options });
    return { ...result, reply: new Uint8Array(readFileSync(outPath)) };
  } finally {
    closeSync(inFd);
    closeSync(outFd);
    closeSync(dirFd);
  }
}

function replyCode(reply: Uint8Array): number {
  return new DataView(reply.buffer, reply.byteOffset).getUint32(0, true);
}

function replyName(reply: Uint8Array): string | null {
  if (reply.length < 20) return null;
  const length = new DataView(reply.buffer, reply.byteOffset).getUint32(16, true);
  return Buffer.from(reply.subarray(20, 20 + length)).toString("latin1");
}

function target(name = "target"): string {
  const path = join(dir.path, name);
  mkdirSync(path);
  return path;
}

/**
 * Packs `paths` here while a child process answers as the receiver: either the real one
 * (`receiver: "unpack"`, into `into`) or a fake that records the stream and sends `reply`.
 */
async function transfer(
  paths: string[],
  receiver:
    | { kind: "unpack"; into: string; allowAllNames?: boolean }
    | { kind: "fake"; reply: Uint8Array; expect: number },
  options: { ignoreSymlinks?: boolean; onProgress?: (bytes: number, entries: number) => void } = {},
) {
  const [streamOurs, streamTheirs] = socketPair();
  const [replyOurs, replyTheirs] = socketPair();
  const recorded = join(dir.path, `recorded-${Math.random()}`);
  const script =
    receiver.kind === "unpack"
      ? `import { unpackStream } from ${JSON.stringify(nativeTs)};
         import { openSync, writeFileSync } from "node:fs";
         const dirFd = openSync(${JSON.stringify(receiver.into)}, "r");
         const allowAllNames = ${receiver.allowAllNames === true};
         const r = unpackStream({ inFd: 0, outFd: 1, dirFd, allowAllNames });
         writeFileSync(${JSON.stringify(recorded)}, JSON.stringify(r));`
      : `import { readSync, writeSync, writeFileSync } from "node:fs";
         const buffer = new Uint8Array(1 << 20); let got = 0;
         while (got < ${receiver.expect}) {
           const n = readSync(0, buffer, got, buffer.length - got, null);
           if (n === 0) break;
           got += n;
         }
         writeFileSync(${JSON.stringify(recorded)}, buffer.subarray(0, got));
         writeSync(1, Buffer.from(${JSON.stringify(hex(receiver.reply))}, "hex"));`;
  const child = Bun.spawn([bun, "-e", script], {
    stdin: streamTheirs,
    stdout: replyTheirs,
    stderr: "inherit",
  });
  closeSync(streamTheirs);
  closeSync(replyTheirs);
  const started = performance.now();
  const result = packStream({ outFd: streamOurs, inFd: replyOurs, paths, ...options });
  const seconds = (performance.now() - started) / 1000;
  closeSync(streamOurs);
  closeSync(replyOurs);
  await child.exited;
  const output = readFileSync(recorded);
  return {
    result,
    seconds,
    receiver: receiver.kind === "unpack" ? JSON.parse(output.toString()) : null,
    recorded: new Uint8Array(output),
  };
}

/** Kinds, modes, sizes, contents, link targets and mtimes (ns) of two trees agree. */
function expectSameTree(a: string, b: string): void {
  const sa = lstatSync(a, { bigint: true });
  const sb = lstatSync(b, { bigint: true });
  expect({ path: b, mode: sb.mode.toString(8) }).toEqual({ path: b, mode: sa.mode.toString(8) });
  if (sa.isSymbolicLink()) {
    expect(readlinkSync(b)).toBe(readlinkSync(a));
    return;
  }
  expect(sb.mtimeNs).toBe(sa.mtimeNs);
  if (sa.isFile()) {
    expect(sb.size).toBe(sa.size);
    if (sa.size < 64n * 1024n * 1024n) expect(readFileSync(b).equals(readFileSync(a))).toBe(true);
  } else if (sa.isDirectory()) {
    const children = readdirSync(a).filter((name) => !lstatSync(join(a, name)).isFIFO());
    expect(readdirSync(b).sort()).toEqual(children.sort());
    for (const name of children) expectSameTree(join(a, name), join(b, name));
  }
}

// ----------------------------------------------------------------------------------- tests

describe("filecopy: validators", () => {
  test("validators wrap names.zig", () => {
    expect(validateFilecopyPath("a/b.txt", false)).toBe(0);
    expect(validateFilecopyPath("a/../b", true)).toBe(EILSEQ);
    expect(validateFilecopyPath("bad\x1b", false)).toBe(EILSEQ);
    expect(validateFilecopyPath("bad\x1b", true)).toBe(0);
    expect(validateFilecopySymlink("d/l", "x", false)).toBe(0);
    expect(validateFilecopySymlink("d/l", "../x", false)).toBe(ENOLINK);
    expect(validateFilecopySymlink("l", "x", false)).toBe(ENOLINK);
    expect(safeForDisplay("plain name.txt")).toBe(true);
    expect(safeForDisplay("\u202eevil")).toBe(false);
    expect(safeForDisplay(new Uint8Array([0xff]))).toBe(false);
  });
});

describe("filecopy: spec §2.9 worked example", () => {
  test("the receiver answers the 143 bytes with the 21-byte reply", () => {
    const stream = workedExample();
    expect(stream.length).toBe(143);
    expect(Bun.hash.crc32(stream)).toBe(0x6c088f02);
    const into = target();
    const { code, reply, stats } = unpackBytes(stream, into);
    expect(code).toBe(0);
    expect(hex(reply)).toBe("0000000000000000028f086c000000000100000064");
    expect(stats).toEqual({ files: 1, dirs: 1, symlinks: 0, bytes: 3, crc: 0x6c088f02 });
    // Before reading it: a read may update the atime (relatime).
    const file = lstatSync(join(into, "d/a.txt"), { bigint: true });
    expect(file.mode).toBe(0o100644n);
    expect(file.mtimeNs).toBe(1700000000n * 1000000000n + 7n);
    expect(file.atimeNs).toBe(1700000000n * 1000000000n + 5n);
    expect(readFileSync(join(into, "d/a.txt"), "utf8")).toBe("hi\n");
    expect(lstatSync(join(into, "d")).mode).toBe(0o40755);
  });

  test("the sender packs a real directory into exactly those bytes", async () => {
    const source = join(dir.path, "src");
    mkdirSync(join(source, "d"), { recursive: true });
    writeFileSync(join(source, "d/a.txt"), "hi\n");
    chmodSync(join(source, "d/a.txt"), 0o644);
    chmodSync(join(source, "d"), 0o755);
    // utimes takes seconds; the nanoseconds 5/7 need utimensat: touch -d with a fraction does.
    execFileSync("touch", ["-a", "-h", "-d", "@1700000000.000000005", join(source, "d/a.txt")]);
    execFileSync("touch", ["-m", "-h", "-d", "@1700000000.000000007", join(source, "d/a.txt")]);
    utimesSync(join(source, "d"), 1700000000, 1700000000);
    const reply = Buffer.from("0000000000000000028f086c000000000100000064", "hex");
    const { result, recorded } = await transfer([join(source, "d") + "/"], {
      kind: "fake",
      reply,
      expect: 143,
    });
    expect(hex(recorded)).toBe(hex(workedExample()));
    expect(result).toEqual({
      status: "ok",
      code: 0,
      message: "",
      lastName: "d",
      bytes: 3,
      entries: 2,
      crc: 0x6c088f02,
    });
  });

  test("a wrong CRC in the reply is detected by the sender", async () => {
    const source = join(dir.path, "src");
    mkdirSync(join(source, "d"), { recursive: true });
    writeFileSync(join(source, "d/a.txt"), "hi\n");
    const reply = Buffer.from("0000000000000000ffffffff000000000100000064", "hex");
    const { result } = await transfer([join(source, "d")], { kind: "fake", reply, expect: 143 });
    expect(result.status).toBe("crc");
    expect(result.message).toBe("File transfer failed: checksum mismatch");
  });

  test("no result before the close: 'eof'; a remote code: 'remote', name sanitized", async () => {
    const source = join(dir.path, "src");
    mkdirSync(join(source, "d"), { recursive: true });
    const eof = await transfer([join(source, "d")], {
      kind: "fake",
      reply: new Uint8Array(0),
      expect: 100,
    });
    expect(eof.result.status).toBe("eof");
    const remote = Buffer.concat([
      Buffer.from("1100000000000000000000000000000006000000", "hex"),
      Buffer.from([0x64, 0x2f, 0x22, 0x1b, 0xc3, 0xa9]),
    ]);
    const { result } = await transfer([join(source, "d")], {
      kind: "fake",
      reply: remote,
      expect: 100,
    });
    expect(result.status).toBe("remote");
    expect(result.code).toBe(EEXIST);
    expect(result.lastName).toBe("d/____");
  });
});

describe("filecopy: round trips through a child receiver", () => {
  test("a tree: nesting, empty files and dirs, links, unicode, modes, ns times", async () => {
    const source = join(dir.path, "src");
    const top = join(source, "top");
    mkdirSync(join(top, "sub/deeper/deepest"), { recursive: true });
    mkdirSync(join(top, "empty-dir"));
    mkdirSync(join(top, "setgid"));
    writeFileSync(join(top, "empty"), "");
    writeFileSync(join(top, "sub/private"), "secret");
    writeFileSync(join(top, "sub/deeper/deepest/leaf"), "leaf");
    writeFileSync(join(top, "Grüße-καλημέρα-привет-漢字.txt"), "unicode");
    writeFileSync(join(top, "setgid/run"), "#!/bin/sh\n");
    writeFileSync(
      join(top, "sub/big"),
      new Uint8Array(3_000_000).map((_, i) => (i * 7) & 0xff),
    );
    symlinkSync("../empty", join(top, "sub/up"));
    symlinkSync("deeper/deepest/leaf", join(top, "sub/down"));
    execFileSync("mkfifo", [join(top, "fifo")]); // skipped by the sender
    chmodSync(join(top, "sub/private"), 0o600);
    chmodSync(join(top, "setgid/run"), 0o755);
    chmodSync(join(top, "setgid"), 0o2755);
    chmodSync(join(top, "sub"), 0o750);
    const stamped = [
      "empty",
      "sub/private",
      "sub/big",
      "sub/deeper/deepest/leaf",
      "setgid/run",
      "sub/deeper/deepest",
      "sub/deeper",
      "sub",
      "setgid",
      "empty-dir",
      "",
    ];
    stamped.forEach((name, i) => {
      execFileSync("touch", [
        "-h",
        "-d",
        `@${1650000000 + i}.${String(999999999 - i).padStart(9, "0")}`,
        join(top, name),
      ]);
    });
    const into = target();
    const progress: number[] = [];
    const { result, receiver } = await transfer(
      [top],
      { kind: "unpack", into },
      { onProgress: (bytes) => progress.push(bytes) },
    );
    expect(result.status).toBe("ok");
    expect(result.lastName).toBe("top");
    expect(result.bytes).toBe(3_000_000 + 6 + 4 + 7 + 10);
    expect(receiver.code).toBe(0);
    expect(receiver.stats.crc).toBe(result.crc);
    expect(receiver.stats.files).toBe(6);
    expect(receiver.stats.symlinks).toBe(2);
    expect(progress.at(-1)).toBe(result.bytes);
    expectSameTree(top, join(into, "top"));
    expect(existsSync(join(into, "top/fifo"))).toBe(false);
  });

  test("--ignore-symlinks sends no links; two arguments follow in one stream", async () => {
    const source = join(dir.path, "src");
    mkdirSync(join(source, "a"), { recursive: true });
    writeFileSync(join(source, "a/f"), "f");
    symlinkSync("f", join(source, "a/l"));
    writeFileSync(join(source, "loose.txt"), "loose");
    const into = target();
    const { result, receiver } = await transfer(
      [join(source, "a"), join(source, "loose.txt")],
      { kind: "unpack", into },
      { ignoreSymlinks: true },
    );
    expect(result.status).toBe("ok");
    expect(result.lastName).toBe("loose.txt");
    expect(receiver.stats.symlinks).toBe(0);
    expect(readdirSync(join(into, "a"))).toEqual(["f"]);
    expect(readFileSync(join(into, "loose.txt"), "utf8")).toBe("loose");
  });

  test("a sparse file of 256 MiB", async () => {
    const source = join(dir.path, "src");
    mkdirSync(source);
    const sparse = join(source, "sparse.img");
    execFileSync("truncate", ["-s", "256M", sparse]);
    writeFileSync(join(source, "marker"), "x");
    const into = target();
    const { result, receiver, seconds } = await transfer([sparse], { kind: "unpack", into });
    expect(result.status).toBe("ok");
    expect(receiver.stats.bytes).toBe(256 * 1024 * 1024);
    expect(lstatSync(join(into, "sparse.img")).size).toBe(256 * 1024 * 1024);
    console.log(
      `filecopy: 256 MiB sparse file in ${seconds.toFixed(2)} ` +
        `s (${(256 / seconds).toFixed(0)} MiB/s)`,
    );
  });

  test("an existing name stops the copy with EEXIST; nothing is overwritten", async () => {
    const source = join(dir.path, "src");
    mkdirSync(join(source, "d"), { recursive: true });
    writeFileSync(join(source, "d/a"), "new");
    const into = target();
    mkdirSync(join(into, "d"));
    writeFileSync(join(into, "d/a"), "old");
    const { result, receiver } = await transfer([join(source, "d")], { kind: "unpack", into });
    expect(receiver.code).toBe(EEXIST);
    expect(result).toMatchObject({ status: "remote", code: EEXIST, lastName: "d/a" });
    expect(readFileSync(join(into, "d/a"), "utf8")).toBe("old");
  });
});

describe("filecopy: the receiver's refusals", () => {
  const rejected = [
    "",
    "/abs",
    "a//b",
    "./a",
    "a/.",
    "..",
    "a/../b",
    "a/",
    "esc\x1b",
    "del\x7f",
    "nbsp\u00a0",
    "rtl\u202e",
    "\u05d0",
    "zwj\u200d",
    "smile\u{1f600}",
  ];
  for (const name of rejected) {
    for (const [kind, mode] of [
      ["file", 0o100644],
      ["dir", 0o40755],
    ] as const) {
      // Upstream's directory quirk (spec §3.7): the wire carries (uint32)-84, not EILSEQ.
      const expected = kind === "dir" ? 2 ** 32 - EILSEQ : EILSEQ;
      const what = kind === "dir" ? "(uint32)-84" : "EILSEQ";
      test(`${kind} ${JSON.stringify(name)} is ${what} and creates nothing`, () => {
        const into = target();
        const { code, reply } = unpackBytes(
          new StreamBuilder().entry(name, mode, "").end().bytes(),
          into,
        );
        expect(code).toBe(expected);
        expect(replyCode(reply)).toBe(expected);
        expect(readdirSync(into)).toEqual([]);
      });
    }
  }

  test("bytes that are not UTF-8 are EILSEQ, and fine with allowAllNames", () => {
    const name = new Uint8Array([0x66, 0xff, 0x66]);
    const into = target();
    expect(unpackBytes(new StreamBuilder().file(name, "x").end().bytes(), into).code).toBe(EILSEQ);
    expect(readdirSync(into)).toEqual([]);
    expect(
      unpackBytes(new StreamBuilder().file(name, "x").end().bytes(), into, { allowAllNames: true })
        .code,
    ).toBe(0);
    expect(readdirSync(into).length).toBe(1);
  });

  test("symlinks that could escape the copied tree are ENOLINK, reported with the target", () => {
    for (const [name, linkTarget] of [
      ["top", "x"],
      ["d/l", "../x"],
      ["d/l", "/etc/passwd"],
      ["d/e/l", "../../x"],
      ["d/e/l", "a/../../x"],
    ]) {
      const into = target(`t-${Math.random()}`);
      const { code, reply } = unpackBytes(
        new StreamBuilder().dir("d").dir("d/e").link(name!, linkTarget!).end().bytes(),
        into,
      );
      expect({ name, code }).toEqual({ name, code: ENOLINK });
      expect(replyName(reply)).toBe(linkTarget!);
      expect(existsSync(join(into, name!))).toBe(false);
    }
    const into = target();
    expect(
      unpackBytes(new StreamBuilder().dir("d").dir("d/e").link("d/e/l", "../x").end().bytes(), into)
        .code,
    ).toBe(0);
    expect(readlinkSync(join(into, "d/e/l"))).toBe("../x");
  });

  test("a cut in a name or content: LEGAL_EOF; at a header: EREMOTEIO; no half file", () => {
    const stream = workedExample();
    const cases: Array<[number, number, string]> = [
      [0, EREMOTEIO, "before anything"],
      [20, EREMOTEIO, "inside the first header"],
      [33, LEGAL_EOF, "inside a name"],
      [34, EREMOTEIO, "after the first entry"],
      [75, LEGAL_EOF, "inside the file's content"],
      [77, EREMOTEIO, "after the file"],
      [111, EREMOTEIO, "before the end marker"],
      [120, EREMOTEIO, "inside the end marker"],
    ];
    for (const [cut, expected, what] of cases) {
      const into = target(`cut-${cut}`);
      const { code, reply } = unpackBytes(stream.subarray(0, cut), into);
      expect({ what, code }).toEqual({ what, code: expected });
      expect(replyCode(reply)).toBe(expected);
      expect(existsSync(join(into, "d/a.txt"))).toBe(cut >= 77);
    }
  });

  test("nanoseconds above 999999999 stop the receiver without a result (-1, fatal)", () => {
    const into = target();
    const { code, fatal, reply } = unpackBytes(
      new StreamBuilder().file("f", "x", 0o100644, { mtimeNsec: 1_000_000_000 }).end().bytes(),
      into,
    );
    expect(code).toBe(-1);
    expect(fatal).toContain("nanoseconds");
    expect(reply.length).toBe(0);
  });

  test("a full disk is ENOSPC and leaves nothing visible (tmpfs of 1 MiB)", () => {
    const into = target();
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", into], { stdio: "pipe" });
    } catch (error) {
      console.log(
        `filecopy: skipped the full-disk test: cannot ` +
          `mount a tmpfs (${String(error).split("\n")[0]})`,
      );
      return;
    }
    try {
      const big = new Uint8Array(2 * 1024 * 1024).fill(0x78);
      const { code, reply } = unpackBytes(
        new StreamBuilder().file("small", "fits").file("big", big).end().bytes(),
        into,
      );
      expect(code).toBe(ENOSPC);
      expect(replyName(reply)).toBe("big");
      expect(readdirSync(into)).toEqual(["small"]);
    } finally {
      execFileSync("umount", ["-l", into]);
    }
  });
});
