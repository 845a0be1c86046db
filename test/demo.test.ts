import { expect, test } from "bun:test";
import { join } from "node:path";

test("the demo runs end to end and reports every step ok", async () => {
  const qrx = join(import.meta.dir, "..", "bin", "qrx");
  const run = Bun.spawn([qrx, "demo", "--bytes", "16M"], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
  expect(err).toBe("");
  expect(out).toContain("All steps passed.");
  expect(out).toContain("16 MiB, 64 KiB ring");
  expect(out).not.toContain("FAILED");
  expect(code).toBe(0);
});

test("qrx explains a bad size instead of crashing", async () => {
  const qrx = join(import.meta.dir, "..", "bin", "qrx");
  const run = Bun.spawn([qrx, "demo", "--bytes", "lots"], { stdout: "pipe", stderr: "pipe" });
  const [err, code] = await Promise.all([new Response(run.stderr).text(), run.exited]);
  expect(err).toContain('"lots" is not a size');
  expect(code).not.toBe(0);
});
