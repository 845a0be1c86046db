// A reader that goes away before qrx writes (`qrx ... | head -1`, here `| :`) ends qrx quietly
// with 141, as SIGPIPE ends C tools; it was an EPIPE stack trace.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { TestLab } from "../helpers/lab.ts";

const QRX = join(import.meta.dir, "..", "..", "bin", "qrx");

function throughClosedPipe(args: string): { status: string; stderr: string } {
  // `:` exits at once, so qrx's first write finds the pipe's read end closed.
  const script = `${QRX} ${args} | :; echo "\${PIPESTATUS[0]}"`;
  const result = Bun.spawnSync(["bash", "-c", script], { stdout: "pipe", stderr: "pipe" });
  return { status: result.stdout.toString().trim(), stderr: result.stderr.toString() };
}

test("qrx completion bash | : exits 141 without a word", () => {
  expect(throughClosedPipe("completion bash")).toEqual({ status: "141", stderr: "" });
});

test("qrx lab logs | : exits 141 without a word", async () => {
  const lab = new TestLab();
  try {
    await lab.up();
    await lab.down();
    expect(throughClosedPipe(`lab logs --dir ${lab.dir}`)).toEqual({ status: "141", stderr: "" });
  } finally {
    await lab.remove();
  }
}, 60_000);
