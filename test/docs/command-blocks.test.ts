// Every ```sh block of README.md and docs/lab.md runs as written, in order, from a fresh state
// (empty HOME and XDG_RUNTIME_DIR, bin/ first on PATH, the checkout as the working directory),
// under bash -e -o pipefail: a block fails if any of its commands fails. A block that cannot run
// here says why in a `<!-- docs-test: skip: REASON -->` line right above it.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/paths.ts";

const ROOT = join(import.meta.dir, "..", "..");
const SKIP = /^<!-- docs-test: skip: (.+) -->$/;

interface Block {
  line: number;
  code: string;
  skip: string | null;
}

export function commandBlocks(markdown: string): Block[] {
  const lines = markdown.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(sh|bash)\s*$/.test(lines[i]!)) continue;
    const end = lines.indexOf("```", i + 1);
    if (end < 0) throw new Error(`line ${i + 1}: a code block that never ends`);
    const skip = SKIP.exec(lines[i - 1] ?? "")?.[1] ?? null;
    blocks.push({ line: i + 1, code: lines.slice(i + 1, end).join("\n"), skip });
    i = end;
  }
  return blocks;
}

function freshEnv(state: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^(QRX_|QREXEC_|VCHAN_)/.test(key)) env[key] = value;
  }
  for (const dir of ["home", "run"]) mkdirSync(join(state, dir), { recursive: true });
  return {
    ...env,
    HOME: join(state, "home"),
    XDG_RUNTIME_DIR: join(state, "run"),
    PATH: `${join(ROOT, "bin")}:${env.PATH}`,
  };
}

const scratch = tempDir("qrx-docs-");
afterAll(() => scratch.remove());

/** The checkout's uncommitted changes: the blocks must not write into it. */
function checkoutChanges(): string {
  return Bun.spawnSync(["git", "status", "--porcelain"], { cwd: ROOT }).stdout.toString();
}
const before = checkoutChanges();

for (const file of ["README.md", "docs/lab.md"]) {
  describe(file, () => {
    const blocks = commandBlocks(readFileSync(join(ROOT, file), "utf8"));
    const state = join(scratch.path, file.replace("/", "-"));
    const env = freshEnv(state);
    afterAll(() => {
      // A block that failed half-way may have left its lab up.
      Bun.spawnSync([join(ROOT, "bin", "qrx"), "lab", "down"], {
        env,
        stdout: "ignore",
        stderr: "ignore",
      });
    });

    test("has command blocks, and every skipped one says why", () => {
      expect(blocks.filter((block) => block.skip === null).length).toBeGreaterThan(0);
      for (const block of blocks)
        if (block.skip !== null) expect(block.skip.length).toBeGreaterThan(10);
    });

    for (const block of blocks.filter((candidate) => candidate.skip === null)) {
      test(`the block at line ${block.line} runs`, async () => {
        const script = join(state, `block-${block.line}.sh`);
        writeFileSync(script, `${block.code}\n`);
        // Output into files, as onto a terminal: Bun's own stdio pipes are sockets, which a
        // finished qrexec-client-vm shuts down for every later writer (as upstream does).
        const [out, err] = [`${script}.out`, `${script}.err`];
        const child = Bun.spawn(["bash", "-e", "-o", "pipefail", script], {
          cwd: ROOT,
          env,
          stdin: "ignore",
          stdout: Bun.file(out),
          stderr: Bun.file(err),
        });
        const code = await child.exited;
        const [stdout, stderr] = [readFileSync(out, "utf8"), readFileSync(err, "utf8")];
        if (code !== 0)
          throw new Error(
            `${file}:${block.line} exited ${code}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`,
          );
        expect(checkoutChanges()).toBe(before);
      }, 60_000);
    }
  });
}

test("a block with a failing command fails (the runner's own check)", () => {
  const blocks = commandBlocks(
    "text\n```sh\ntrue\nfalse\ntrue\n```\n" +
      "<!-- docs-test: skip: not runnable here -->\n```sh\nx\n```\n",
  );
  expect(blocks).toEqual([
    { line: 2, code: "true\nfalse\ntrue", skip: null },
    { line: 8, code: "x", skip: "not runnable here" },
  ]);
  const run = Bun.spawnSync(["bash", "-e", "-o", "pipefail", "-c", blocks[0]!.code]);
  expect(run.exitCode).toBe(1);
});
