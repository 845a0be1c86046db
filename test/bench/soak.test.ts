// qrx bench soak end to end, for a few seconds: its JSON rows, and no call failed.
import { expect, test } from "bun:test";
import { join } from "node:path";
import type { SoakRow } from "../../src/bench/soak.ts";

const QRX = join(import.meta.dir, "..", "..", "bin", "qrx");
const LAB_PROCESSES = [
  "admin",
  "policy-daemon",
  "work.agent",
  "work.daemon",
  "vault.agent",
  "vault.daemon",
];

test("a short soak: one, then 20 calls at once; none failed; fds and RSS per process", async () => {
  const run = Bun.spawn([QRX, "bench", "soak", "--seconds", "6", "--json"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(run.stdout).text(),
    new Response(run.stderr).text(),
    run.exited,
  ]);
  expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
  const rows = JSON.parse(stdout) as SoakRow[];
  expect(rows.map((row) => [row.name, row.concurrency])).toEqual([
    ["sequential", 1],
    ["concurrent", 20],
  ]);
  for (const row of rows) {
    expect(row.errors).toEqual([]);
    expect(row.failures).toBe(0);
    expect(row.calls).toBeGreaterThan(row.concurrency);
    // `seconds` is rounded to 0.1 s and the rate to 0.1 call/s, each from the unrounded time.
    expect(row.callsPerSecond).toBeGreaterThanOrEqual(row.calls / (row.seconds + 0.05) - 0.05);
    expect(row.callsPerSecond).toBeLessThanOrEqual(row.calls / (row.seconds - 0.05) + 0.05);
    expect(row.timeline.length).toBeGreaterThanOrEqual(2);
    expect(row.timeline.some((point) => point.callsPerSecond > 0)).toBe(true);
    expect(row.timeline.every((point) => point.fds > 0 && point.rssKb > 0)).toBe(true);
    expect(row.processes.map((entry) => entry.label)).toEqual(LAB_PROCESSES);
    for (const entry of row.processes) {
      const figures = [entry.fdsStart, entry.fdsEnd, entry.rssStartKb, entry.rssEndKb];
      expect(Math.min(...figures)).toBeGreaterThan(0);
    }
    const fdSum = (pick: "fdsStart" | "fdsEnd") => {
      return row.processes.reduce((sum, entry) => sum + entry[pick], 0);
    };
    expect(row.fdGrowth).toBe(fdSum("fdsEnd") - fdSum("fdsStart"));
    // A call's fds are closed once it is over: no growth that scales with the calls made.
    expect(row.fdGrowth).toBeLessThanOrEqual(2);
    expect(typeof row.rssGrowthKb).toBe("number");
  }
}, 60_000);
