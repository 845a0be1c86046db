import { expect, test } from "bun:test";
import { join } from "node:path";

test("qrx bench dispvm --json: a row per measurement, from real DisposableVMs", async () => {
  const qrx = join(import.meta.dir, "..", "..", "bin", "qrx");
  const run = Bun.spawn([qrx, "bench", "dispvm", "--json", "--samples", "2"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(run.stdout).text(),
    new Response(run.stderr).text(),
    run.exited,
  ]);
  expect(code).toBe(0);
  expect(err).toBe("");
  const rows = JSON.parse(out) as Array<{
    name: string;
    medianMs: number;
    p90Ms: number;
    samples: number;
  }>;
  expect(rows.map((row) => row.name)).toEqual([
    "create",
    "start",
    "kill",
    "call:$dispvm",
    "baseline:call-running-vm",
  ]);
  for (const row of rows) {
    expect(row.samples).toBe(2);
    expect(row.medianMs).toBeGreaterThan(0);
    expect(row.p90Ms).toBeGreaterThanOrEqual(row.medianMs);
  }
  const by = Object.fromEntries(rows.map((row) => [row.name, row.medianMs]));
  // Starting means two processes and a vchan handshake: it cannot be cheaper than the registry
  // work.
  expect(by.start!).toBeGreaterThan(by.create!);
  expect(by["call:$dispvm"]).toBeGreaterThan(by["baseline:call-running-vm"]!);
}, 60_000);
