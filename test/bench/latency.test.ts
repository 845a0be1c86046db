// `qrx bench latency` and `qrx bench memory` run for real, briefly: every row there, of the shape
// the docs and the next helper rely on, and the trace they were asked for written.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { QRX } from "../helpers/lab.ts";
import { tempDir } from "../helpers/paths.ts";
import { groupCalls, parseTrace } from "../../src/trace-report.ts";

const ROWS = [
  "baseline:sh",
  "baseline:bun-start",
  "baseline:service",
  "latency-dom0-vm",
  "latency-vm-dom0",
  "latency-vm-vm",
  "copy-1-byte",
  "dispvm-call",
  "run-true",
  "help-slowest",
  "latency-vm-vm-policy-program",
];

describe("qrx bench latency", () => {
  test("--json --calls 1 --warm-up 2 --trace: rows, figures, cold figures; traced", async () => {
    const dir = tempDir();
    try {
      const trace = join(dir.path, "latency.jsonl");
      const options = ["--json", "--calls", "1", "--warm-up", "2", "--trace", trace];
      const argv = [QRX, "bench", "latency", ...options];
      const child = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
      const out = new Response(child.stdout).text();
      const err = new Response(child.stderr).text();
      const [stdout, stderr, code] = await Promise.all([out, err, child.exited]);
      expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
      const rows = JSON.parse(stdout) as Array<Record<string, unknown>>;
      expect(rows.map((row) => row.name)).toEqual(ROWS);
      for (const row of rows) {
        expect(row.calls).toBe(1);
        expect(row.medianMs).toBeGreaterThan(0);
        expect(row.p99Ms).toBeGreaterThanOrEqual(row.medianMs as number);
        const target = row.targetMs;
        expect(target === null || (typeof target === "number" && target > 0)).toBe(true);
      }
      const byName = new Map(rows.map((row) => [row.name, row]));
      // The call rows, timed warm, keep their cold figure; the others have none.
      const callRows = ["latency-dom0-vm", "latency-vm-dom0", "latency-vm-vm"];
      for (const row of rows) {
        const called = callRows.includes(row.name as string) || row.name === ROWS.at(-1);
        expect(typeof row.coldMedianMs === "number" && row.coldMedianMs > 0).toBe(called);
      }
      expect(byName.get("baseline:sh")!.targetMs).toBeNull();
      expect(byName.get("latency-vm-vm")!.targetMs).toBe(4);
      expect(byName.get("help-slowest")!.program).toMatch(/^(q[a-z-]+)$/);
      const byHand = byName.get("latency-vm-vm-policy-program")!;
      const vmVm = byName.get("latency-vm-vm")!.medianMs as number;
      expect(byHand.targetMs).toBeCloseTo(vmVm + (byHand.policyProgramMs as number), 1);
      // The lab's call timed after each run of the program, beside the bound.
      expect(byHand.labAfterProgramMs).toBeGreaterThan(0);
      // And sh beside it, back to back and after the program, for the host's share.
      expect(byHand.shMs).toBeGreaterThan(0);
      expect(byHand.shAfterProgramMs).toBeGreaterThan(0);
      const calls = groupCalls(parseTrace(readFileSync(trace, "utf8")).events);
      const titles = calls.map((call) => call.title);
      const kinds = [
        "-> vault test.Echo",
        "-> dom0 test.Echo",
        "-> $dispvm test.Add",
        "-> @default qubes.Filecopy",
        "-> vault: user:QUBESRPC test.Echo dom0",
      ];
      for (const title of kinds) {
        expect(titles.some((candidate) => candidate.includes(title))).toBe(true);
      }
    } finally {
      dir.remove();
    }
  }, 120_000);
});
