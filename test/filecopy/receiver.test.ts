// qfile-unpacker (the receiver) against hand-made, often hostile, streams: the real program, a
// real directory, the result read back from its stdout.
import { afterAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import {
  concat,
  crcOf,
  dirEntry,
  END,
  fileEntry,
  header,
  LEGAL_EOF_STATUS,
  linkEntry,
  parseResult,
  S_IFREG,
  type ParsedResult,
} from "../helpers/filecopy-stream.ts";
import { tempDir } from "../helpers/paths.ts";

const UNPACKER = join(import.meta.dir, "..", "..", "bin", "qfile-unpacker");
const root = tempDir("qrx-recv-");
afterAll(() => root.remove());
let counter = 0;

interface Received {
  status: number;
  result: ParsedResult | null;
  raw: Uint8Array;
  stderr: string;
  dir: string;
}

async function receive(stream: Uint8Array, args: string[] = []): Promise<Received> {
  const dir = join(root.path, `t${counter++}`);
  mkdirSync(dir);
  const child = Bun.spawn([UNPACKER, ...args, String(process.getuid!()), dir], {
    stdin: stream,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [raw, stderr, status] = await Promise.all([
    new Response(child.stdout).bytes(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { status, result: raw.length > 0 ? parseResult(raw) : null, raw, stderr, dir };
}

function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (path: string, prefix: string) => {
    for (const name of readdirSync(path).sort()) {
      const full = join(path, name);
      out.push(`${prefix}${name}`);
      if (lstatSync(full).isDirectory()) walk(full, `${prefix}${name}/`);
    }
  };
  walk(dir, "");
  return out;
}

describe("qfile-unpacker", () => {
  test("the spec's worked example (§2.9): 143 bytes, CRC 0x6c088f02, a 21-byte reply", async () => {
    const times = { atime: 1_700_000_000, mtime: 1_700_000_000 };
    const stream = concat(
      dirEntry("d", 0o755, times),
      fileEntry("d/a.txt", "hi\n", 0o644, { ...times, atimeNsec: 5, mtimeNsec: 7 }),
      dirEntry("d", 0o755, times),
      END,
    );
    expect(stream.length).toBe(143);
    expect(crcOf(stream)).toBe(0x6c088f02);
    const received = await receive(stream);
    expect(received.status).toBe(0);
    expect(Buffer.from(received.raw).toString("hex")).toBe(
      "0000000000000000028f086c000000000100000064",
    );
    // Times first: reading the file would move its atime.
    const file = lstatSync(join(received.dir, "d", "a.txt"), { bigint: true });
    expect(Number(file.mode & 0o7777n)).toBe(0o644);
    expect(file.mtimeNs).toBe(1_700_000_000_000_000_007n);
    expect(file.atimeNs).toBe(1_700_000_000_000_000_005n);
    expect(Number(lstatSync(join(received.dir, "d")).mode & 0o7777)).toBe(0o755);
    expect(readFileSync(join(received.dir, "d", "a.txt"), "utf8")).toBe("hi\n");
  });

  test("every rejected name class: EILSEQ (84), nothing created", async () => {
    const names: Array<string | Uint8Array> = [
      "/etc/passwd",
      "a//b",
      "./a",
      "a/.",
      "a/./b",
      ".",
      "..",
      "../escape",
      "a/../b",
      "a/",
      "tab\there",
      "del\x7f",
      "nbsp\u00a0",
      "zwj\u200d",
      "rlo\u202e",
      "emoji\u{1f600}",
      "hebrew\u05d0",
      new Uint8Array([0x61, 0xc0, 0xaf]), // overlong '/'
      new Uint8Array([0x61, 0xed, 0xa0, 0x80]), // surrogate
      new Uint8Array([0x61, 0xc3]), // truncated
    ];
    for (const name of names) {
      const received = await receive(concat(fileEntry(name, "x"), END));
      expect({ name: String(name), code: received.result?.code }).toEqual({
        name: String(name),
        code: 84,
      });
      expect(received.status).toBe(84);
      expect(tree(received.dir)).toEqual([]);
    }
    // An empty name: namelen 1 (just the NUL).
    const empty = await receive(
      concat(
        header(1, S_IFREG | 0o644, 1),
        new Uint8Array([0]),
        new TextEncoder().encode("x"),
        END,
      ),
    );
    expect(empty.result?.code).toBe(84);
  });

  test("allow-all-names accepts any character but keeps the structural rules", async () => {
    const ok = await receive(concat(fileEntry("tab\there \u05d0 \u{1f600}", "x"), END), [
      "--allow-all-names",
    ]);
    expect(ok.result?.code).toBe(0);
    expect(tree(ok.dir)).toEqual(["tab\there \u05d0 \u{1f600}"]);
    for (const name of ["../x", "/abs", "a//b", "a/"]) {
      expect(
        (await receive(concat(fileEntry(name, "x"), END), ["--allow-all-names"])).result?.code,
      ).toBe(84);
    }
  });

  test("symlinks: only inside the copied tree, never at top level (ENOLINK, 67)", async () => {
    const good = await receive(
      concat(
        dirEntry("t"),
        dirEntry("t/sub"),
        linkEntry("t/sub/up", "../file"),
        linkEntry("t/here", "file"),
        fileEntry("t/file", "f"),
        dirEntry("t"),
        END,
      ),
    );
    expect(good.result?.code).toBe(0);
    expect(readlinkSync(join(good.dir, "t/sub/up"))).toBe("../file");
    expect(readFileSync(join(good.dir, "t/sub/up"), "utf8")).toBe("f");
    for (const [name, target] of [
      ["top", "anything"],
      ["t/out", "../outside"],
      ["t/abs", "/etc/passwd"],
      ["t/s/deep", "../../x"],
    ] as const) {
      const received = await receive(
        concat(
          dirEntry("t"),
          name === "t/s/deep" ? dirEntry("t/s") : new Uint8Array(0),
          linkEntry(name, target),
          END,
        ),
      );
      expect({ name, code: received.result?.code }).toEqual({ name, code: 67 });
      // The last name reported is the target (§3.5).
      expect(received.result?.lastName).toBe(target);
      expect(existsSync(join(received.dir, name))).toBe(false);
    }
  });

  // Upstream reads a header with one read_all: EOF anywhere in it is "no end marker" (EREMOTEIO);
  // EOF inside a name, content or link target is LEGAL_EOF (§2.6).
  test("a cut at every boundary: EREMOTEIO at a header, LEGAL_EOF inside an entry", async () => {
    const first = fileEntry("done.txt", "complete");
    const second = fileEntry("partial.bin", "0123456789".repeat(1000));
    const full = concat(first, second, END);
    const cuts: Array<[string, number, number]> = [
      ["inside the header", first.length + 10, 121],
      ["inside the name", first.length + 32 + 3, LEGAL_EOF_STATUS],
      ["inside the data", first.length + 32 + 12 + 5000, LEGAL_EOF_STATUS],
      ["before the end marker", first.length + second.length, 121],
      ["inside the end marker", first.length + second.length + 7, 121],
      ["nothing at all", 0, 121],
    ];
    for (const [where, length, status] of cuts) {
      const received = await receive(full.subarray(0, length));
      expect({ where, status: received.status }).toEqual({ where, status });
      // Complete entries stay, the cut one is not visible (O_TMPFILE).
      const complete =
        length >= first.length + second.length
          ? ["done.txt", "partial.bin"]
          : length >= first.length
            ? ["done.txt"]
            : [];
      expect({ where, tree: tree(received.dir) }).toEqual({ where, tree: complete });
    }
  });

  test("an existing name: EEXIST (17), nothing overwritten", async () => {
    const dir = join(root.path, `t${counter}`);
    const received = await (async () => {
      mkdirSync(dir);
      writeFileSync(join(dir, "keep.txt"), "original");
      const child = Bun.spawn([UNPACKER, String(process.getuid!()), dir], {
        stdin: concat(fileEntry("keep.txt", "replacement"), END),
        stdout: "pipe",
        stderr: "pipe",
      });
      counter++;
      const [raw, status] = await Promise.all([new Response(child.stdout).bytes(), child.exited]);
      return { raw, status };
    })();
    expect(received.status).toBe(17);
    expect(parseResult(received.raw)).toMatchObject({ code: 17, lastName: "keep.txt" });
    expect(readFileSync(join(dir, "keep.txt"), "utf8")).toBe("original");
    expect(readdirSync(dir)).toEqual(["keep.txt"]);
  });

  test("an existing directory is merged into; modes and times from its 2nd header", async () => {
    const received = await receive(
      concat(
        dirEntry("m", 0o750),
        fileEntry("m/one", "1"),
        dirEntry("m", 0o750, { mtime: 1_600_000_000 }),
        dirEntry("m", 0o700),
        fileEntry("m/two", "2"),
        dirEntry("m", 0o755),
        END,
      ),
    );
    expect(received.result?.code).toBe(0);
    expect(tree(received.dir)).toEqual(["m", "m/one", "m/two"]);
    expect(Number(lstatSync(join(received.dir, "m")).mode & 0o7777)).toBe(0o755);
  });

  test("a nanosecond field over 999999999 stops the receiver, no result (exit 1)", async () => {
    const received = await receive(
      concat(fileEntry("bad-time", "x", 0o644, { mtimeNsec: 1_000_000_000 }), END),
    );
    expect(received.status).toBe(1);
    expect(received.raw.length).toBe(0);
    expect(received.stderr).toContain("qfile-unpacker");
  });

  test("over-long name: ENAMETOOLONG (36), no last name; unknown type: EINVAL (22)", async () => {
    const long = await receive(concat(header(16384, S_IFREG | 0o644, 0), END));
    expect(long.result).toMatchObject({ code: 36, lastName: null, bytes: 16 });
    const fifo = await receive(
      concat(header(5, 0o010644, 0), new TextEncoder().encode("fifo\0"), END),
    );
    expect(fifo.result?.code).toBe(22);
  });

  test("the result's CRC covers every byte consumed", async () => {
    const stream = concat(
      fileEntry("a", "alpha"),
      dirEntry("b"),
      fileEntry("b/c", ""),
      dirEntry("b"),
      END,
    );
    const received = await receive(stream);
    expect(received.result).toMatchObject({ code: 0, crc: crcOf(stream), lastName: "b" });
  });
});
