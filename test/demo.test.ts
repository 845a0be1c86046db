import { expect, test } from "bun:test";
import { join } from "node:path";

const qrx = join(import.meta.dir, "..", "bin", "qrx");

test("the demo brings the lab up, makes every call, takes it down: all steps pass", async () => {
  const run = Bun.spawn([qrx, "demo", "--bytes", "16M"], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(run.stdout).text(),
    new Response(run.stderr).text(),
    run.exited,
  ]);
  expect(err).toBe("");
  expect(out).toContain("work$ echo 11 22 | qrexec-client-vm vault test.Add\n  33\n");
  expect(out).toContain("Request refused\n  (exit status 126)");
  expect(out).toMatch(/while the call is open, qrx lab status shows disp\d+/);
  expect(out).toMatch(/after the call: disp\d+ is gone/);
  expect(out).toContain("work$ cd ~ && qvm-copy --with-progress big.bin");
  expect(out).toMatch(/sent 16\.00 MiB of 16\.00 MiB in [\d.]+ s, [\d.]+ [KMG]iB\/s/);
  expect(out).toContain("vault's ~/QubesIncoming/work/big.bin has the same bytes");
  expect(out).toContain("Taking the lab down.");
  expect(out).toContain("All steps passed");
  expect(out).not.toContain("FAILED");
  // The demo's lab lived in its own temporary directory, which is gone.
  const dir = /default-dvm\) in (\S+)/.exec(out)![1]!;
  expect(await Bun.file(join(dir, "admin.pid")).exists()).toBe(false);
  expect(code).toBe(0);
}, 60_000);

test("qrx explains a bad size instead of crashing", async () => {
  const run = Bun.spawn([qrx, "demo", "--bytes", "lots"], { stdout: "pipe", stderr: "pipe" });
  const [err, code] = await Promise.all([new Response(run.stderr).text(), run.exited]);
  expect(err).toContain('"lots" is not a size');
  expect(code).not.toBe(0);
});
