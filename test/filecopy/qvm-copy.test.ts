// qvm-copy and friends end to end in a lab: work sends, dom0's policy sends @default to vault,
// vault's qubes.Filecopy service receives into ~/QubesIncoming/work. Real programs throughout.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { TestLab } from "../helpers/lab.ts";

const base = existsSync("/dev/shm") ? "/dev/shm" : undefined;
const lab = new TestLab(base);
let workHome = "";
let incoming = "";

beforeAll(async () => {
  await lab.up();
  workHome = join(lab.dir, "domains", "work", "home");
  incoming = join(lab.dir, "domains", "vault", "home", "QubesIncoming", "work");
});
afterAll(() => lab.remove());

/**
 * What the test wrote into work's home from the host becomes work's own: an isolated domain
 * runs as its own uid, which could not change or remove root's files.
 */
function handToWork(): void {
  const { uid, gid } = lstatSync(workHome);
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      lchownSync(path, uid, gid);
      if (entry.isDirectory()) walk(path);
    }
  };
  walk(workHome);
}

/** `qvm-* ARGS` run in work with its home as the working directory. */
function inWork(argv: string[]) {
  handToWork();
  return lab.run("work", ["sh", "-c", `cd "$HOME" && exec "$@"`, "sh", ...argv]);
}

interface Entry {
  path: string;
  kind: "file" | "dir" | "link";
  mode: number;
  size: number;
  mtimeNs: bigint | null;
  target?: string;
  content?: string;
}

function describeTree(
  dir: string,
  readContent: (path: string, size: number) => boolean = (_, size) => size < 1 << 20,
): Entry[] {
  const out: Entry[] = [];
  const walk = (path: string, relative: string) => {
    for (const name of readdirSync(path).sort()) {
      const full = join(path, name);
      const rel = relative ? `${relative}/${name}` : name;
      const stat = lstatSync(full, { bigint: true });
      const mode = Number(stat.mode & 0o7777n);
      if (stat.isSymbolicLink())
        out.push({
          path: rel,
          kind: "link",
          mode: 0,
          size: 0,
          mtimeNs: null,
          target: readlinkSync(full),
        });
      else if (stat.isDirectory()) {
        out.push({ path: rel, kind: "dir", mode, size: 0, mtimeNs: stat.mtimeNs });
        walk(full, rel);
      } else {
        const entry: Entry = {
          path: rel,
          kind: "file",
          mode,
          size: Number(stat.size),
          mtimeNs: stat.mtimeNs,
        };
        if (readContent(rel, Number(stat.size))) entry.content = readFileSync(full, "latin1");
        out.push(entry);
      }
    }
  };
  walk(dir, "");
  return out;
}

describe("qvm-copy in the lab", () => {
  test("a tree round trip: dirs, empty files, links, unicode, modes, ns times, holes", async () => {
    const tree = join(workHome, "tree");
    mkdirSync(join(tree, "nested", "a", "b"), { recursive: true });
    mkdirSync(join(tree, "empty-dir"));
    mkdirSync(join(tree, "日本語"));
    writeFileSync(join(tree, "empty-file"), "");
    writeFileSync(join(tree, "nested", "a", "b", "c.txt"), "deep content\n");
    writeFileSync(join(tree, "žluťoučký kůň.txt"), "unicode\n");
    writeFileSync(
      join(tree, "日本語", "ファイル"),
      Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251)),
    );
    writeFileSync(join(tree, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
    writeFileSync(join(tree, "secret"), "s", { mode: 0o600 });
    symlinkSync("../empty-file", join(tree, "nested", "link-up"));
    symlinkSync("b/c.txt", join(tree, "nested", "a", "link-same"));
    handToWork();
    const setup = await lab.run("work", [
      "sh",
      "-c",
      `cd "$HOME/tree" && truncate -s 2G sparse.img && chmod 0750 nested && chmod 0700 empty-dir &&
       touch -h -d @1700000000.123456789 secret run.sh 'žluťoučký kůň.txt' &&
       touch -d @1600000000.5 nested empty-dir`,
    ]);
    expect(setup.code).toBe(0);
    const copy = await inWork(["qvm-copy", "--without-progress", "tree"]);
    expect(copy).toEqual({ code: 0, stdout: "", stderr: "" });
    const isSmall = (_: string, size: number) => size < 1 << 20;
    const sent = describeTree(tree, isSmall);
    const received = describeTree(join(incoming, "tree"), isSmall);
    expect(received).toEqual(sent);
    expect(sent.find((entry) => entry.path === "sparse.img")!.size).toBe(2 * 1024 ** 3);
    expect(sent.find((entry) => entry.path === "secret")!.mtimeNs).toBe(1_700_000_000_123_456_789n);
    // The sparse file arrived as zeros all along; spot-check its ends.
    const file = Bun.file(join(incoming, "tree", "sparse.img"));
    const tail = new Uint8Array(await file.slice(2 * 1024 ** 3 - 4096).arrayBuffer());
    expect(tail.every((byte) => byte === 0)).toBe(true);
    rmSync(join(incoming, "tree", "sparse.img"));
    rmSync(join(tree, "sparse.img"));
  }, 120_000);

  test("progress: a final line says what was sent; --without-progress prints nothing", async () => {
    writeFileSync(join(workHome, "progress.bin"), Buffer.alloc(3 * 1024 * 1024, 7));
    const shown = await inWork(["qvm-copy", "--with-progress", "progress.bin"]);
    expect(shown.code).toBe(0);
    expect(shown.stderr).toMatch(
      /^sent 3\.00 MiB of 3\.00 MiB in \d+\.\d s, [\d.]+ [KMG]?i?B\/s\n$/m,
    );
    rmSync(join(incoming, "progress.bin"));
    const quiet = await inWork(["qvm-copy", "--without-progress", "progress.bin"]);
    expect(quiet).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(readFileSync(join(incoming, "progress.bin")).length).toBe(3 * 1024 * 1024);
  });

  test("qvm-copy-to-vm names its target; an existing name is refused (17), kept", async () => {
    writeFileSync(join(workHome, "to-vm.txt"), "first");
    const first = await inWork(["qvm-copy-to-vm", "vault", "to-vm.txt"]);
    expect(first.code).toBe(0);
    expect(first.stderr).toContain("consider qvm-copy");
    writeFileSync(join(workHome, "to-vm.txt"), "second");
    const again = await inWork(["qvm-copy-to-vm", "--without-progress", "vault", "to-vm.txt"]);
    expect(again.code).toBe(17);
    expect(again.stderr).toContain(
      "qfile-agent: Fatal error: File copy: not " +
        "overwriting existing file. Clean QubesIncoming dir, " +
        "and retry copy; Last file: to-vm.txt (error type: File exists)",
    );
    expect(readFileSync(join(incoming, "to-vm.txt"), "utf8")).toBe("first");
  });

  test("qvm-move deletes the sources only after success, keeps them on failure", async () => {
    mkdirSync(join(workHome, "moving"));
    writeFileSync(join(workHome, "moving", "m.txt"), "move me");
    const moved = await inWork(["qvm-move", "--without-progress", "moving"]);
    expect(moved.code).toBe(0);
    expect(existsSync(join(workHome, "moving"))).toBe(false);
    expect(readFileSync(join(incoming, "moving", "m.txt"), "utf8")).toBe("move me");
    // The same name again: the receiver refuses, so the source must stay.
    mkdirSync(join(workHome, "moving"));
    writeFileSync(join(workHome, "moving", "m.txt"), "keep me");
    const failed = await inWork(["qvm-move", "--without-progress", "moving"]);
    expect(failed.code).toBe(17);
    expect(readFileSync(join(workHome, "moving", "m.txt"), "utf8")).toBe("keep me");
  });

  test("`qvm-copy -- -name` copies a file named -name (and qvm-move removes it)", async () => {
    writeFileSync(join(workHome, "-dash"), "dash");
    const copy = await inWork(["qvm-copy", "--without-progress", "--", "-dash"]);
    expect(copy).toMatchObject({ code: 0, stderr: "" });
    expect(readFileSync(join(incoming, "-dash"), "utf8")).toBe("dash");
    writeFileSync(join(workHome, "-moved"), "moved");
    const move = await inWork(["qvm-move", "--without-progress", "--", "-moved"]);
    expect(move.code).toBe(0);
    expect(existsSync(join(workHome, "-moved"))).toBe(false);
    expect(readFileSync(join(incoming, "-moved"), "utf8")).toBe("moved");
  });

  test("names outside the strict set go as qubes.Filecopy+allow-all-names and arrive", async () => {
    writeFileSync(join(workHome, "tab\there \u05d0.txt"), "odd");
    const copy = await inWork(["qvm-copy", "--without-progress", "tab\there \u05d0.txt"]);
    expect(copy.code).toBe(0);
    expect(readFileSync(join(incoming, "tab\there \u05d0.txt"), "utf8")).toBe("odd");
    const policyLog = await lab.qrx(["lab", "logs", "dom0"]);
    expect(policyLog.stdout).toContain("qubes.Filecopy+allow-all-names");
  });

  test("refused before sending: '.', a missing file, a top-level symlink, a link out", async () => {
    symlinkSync("/etc/passwd", join(workHome, "top-link"));
    mkdirSync(join(workHome, "leaky"));
    symlinkSync("../../outside", join(workHome, "leaky", "out"));
    const cases: Array<[string[], string]> = [
      [["qvm-copy", "."], "not '.', '..' or '/'"],
      [["qvm-copy", "no-such-file"], "cannot copy 'no-such-file': No such file or directory"],
      [["qvm-copy", "top-link"], "a top-level symlink"],
      [["qvm-copy", "leaky"], "would point outside the copied tree"],
      [["qvm-copy"], "usage: qvm-copy"],
      [["qvm-copy", "--bogus", "x"], "usage: qvm-copy"],
    ];
    for (const [argv, message] of cases) {
      const result = await inWork(argv);
      expect({ argv, code: result.code }).toEqual({ argv, code: 1 });
      expect(result.stderr).toContain(message);
    }
    // --ignore-symlinks leaves the escaping link out instead.
    const ignored = await inWork(["qvm-copy", "--without-progress", "--ignore-symlinks", "leaky"]);
    expect(ignored.code).toBe(0);
    expect(readdirSync(join(incoming, "leaky"))).toEqual([]);
  });

  test("a copy the policy refuses: 126, Request refused", async () => {
    expect((await lab.qrx(["vm", "start", "personal"])).code).toBe(0);
    const result = await lab.run("personal", [
      "sh",
      "-c",
      'cd "$HOME" && echo x > f && qvm-copy --without-progress f',
    ]);
    expect(result.code).toBe(126);
    expect(result.stderr).toBe("Request refused\n");
  });
});
