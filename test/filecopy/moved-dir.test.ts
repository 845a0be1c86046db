// The receiver must not follow a directory that the local user moves out of the target in the
// middle of a transfer (issue 16 item 4): upstream's bind mount makes such a rename fail; ours
// succeeds, so the receiver must notice (ENOENT naming the component, as upstream without its
// bind mount) and write nothing at the directory's new place. The real qfile-unpacker gets a
// hand-made stream, paused where the rename happens.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import {
  concat,
  dirEntry,
  END,
  fileEntry,
  header,
  parseResult,
  S_IFREG,
} from "../helpers/filecopy-stream.ts";
import { tempDir } from "../helpers/paths.ts";
import { fdTargets } from "../helpers/procfs.ts";
import { BIN, waitFor } from "../helpers/system.ts";

const root = tempDir("qrx-fc-moved-");
afterAll(() => root.remove());
let counter = 0;

function start(into: string) {
  const argv = [join(BIN, "qfile-unpacker"), String(process.getuid!()), into];
  const child = Bun.spawn(argv, { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const send = (bytes: Uint8Array) => {
    child.stdin.write(bytes);
    child.stdin.flush();
  };
  const finish = async () => {
    child.stdin.end();
    const [raw, status] = await Promise.all([new Response(child.stdout).bytes(), child.exited]);
    return { status, result: parseResult(raw) };
  };
  return { pid: child.pid, send, finish };
}

function places() {
  const base = join(root.path, `case-${counter++}`);
  const into = join(base, "target");
  const outside = join(base, "outside");
  mkdirSync(into, { recursive: true });
  mkdirSync(outside);
  return { into, outside };
}

describe("a directory moved out of the target mid-transfer", () => {
  test("between entries: the next entry fails with ENOENT (2), nothing lands outside", async () => {
    const { into, outside } = places();
    const receiver = start(into);
    receiver.send(concat(dirEntry("a"), dirEntry("a/sub"), fileEntry("a/sub/x", "first")));
    await waitFor(() => existsSync(join(into, "a/sub/x")), "a/sub/x to be received");
    renameSync(join(into, "a"), join(outside, "a"));
    receiver.send(concat(fileEntry("a/sub/y", "second"), dirEntry("a/sub/new"), END));
    const { status, result } = await receiver.finish();
    expect(status).toBe(2);
    expect(result).toMatchObject({ code: 2, lastName: "a" });
    expect(readdirSync(join(outside, "a/sub"))).toEqual(["x"]);
    expect(readdirSync(into)).toEqual([]);
  });

  test("while a file's content is arriving: the file is not linked at the new place", async () => {
    const { into, outside } = places();
    const receiver = start(into);
    const content = new Uint8Array(10_000).fill(0x61);
    const name = new TextEncoder().encode("a/big\0");
    const head = header(name.length, S_IFREG | 0o644, content.length);
    receiver.send(concat(dirEntry("a"), head, name, content.subarray(0, 4000)));
    // The receiver holds the file open (O_TMPFILE, shown as "#inode (deleted)") in a/.
    const inA = join(into, "a") + "/";
    const tmpfile = () => fdTargets(receiver.pid).some((path) => path.startsWith(inA));
    await waitFor(tmpfile, "the receiver to open the file in a/");
    renameSync(join(into, "a"), join(outside, "a"));
    receiver.send(concat(content.subarray(4000), END));
    const { status, result } = await receiver.finish();
    expect(status).toBe(2);
    expect(result).toMatchObject({ code: 2, lastName: "a" });
    expect(readdirSync(join(outside, "a"))).toEqual([]);
  });

  test("a directory replaced within the target: the path counts, not the old fd", async () => {
    const { into } = places();
    const receiver = start(into);
    receiver.send(concat(dirEntry("a"), fileEntry("a/x", "1")));
    await waitFor(() => existsSync(join(into, "a/x")), "a/x to be received");
    renameSync(join(into, "a"), join(into, "b"));
    mkdirSync(join(into, "a"));
    receiver.send(concat(fileEntry("a/y", "2"), dirEntry("a"), END));
    const { status } = await receiver.finish();
    expect(status).toBe(0);
    expect(readdirSync(join(into, "a"))).toEqual(["y"]);
    expect(readdirSync(join(into, "b"))).toEqual(["x"]);
  });
});
