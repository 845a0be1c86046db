// `qrx bench copy` and `qrx bench call` run for real, briefly: paired or rotated rounds, medians,
// the shapes docs/benchmarks.md shows. And the summaries every benchmark takes from src/stats.ts.
import { describe, expect, test } from "bun:test";
import { QRX } from "../helpers/lab.ts";
import type { CopyBenchRow } from "../../src/bench/copy.ts";
import { roundOrder } from "../../src/bench/call.ts";
import { inTurns, ratioLine, roundRatios } from "../../src/bench/rounds.ts";
import { median, percentile } from "../../src/stats.ts";

describe("qrx bench copy", () => {
  test("--json --rounds 3: four rows, each the median of its three runs", async () => {
    const argv = [
      QRX,
      "bench",
      "copy",
      "--json",
      "--bytes",
      "2M",
      "--files",
      "30",
      "--rounds",
      "3",
    ];
    const child = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
    const out = new Response(child.stdout).text();
    const err = new Response(child.stderr).text();
    const [stdout, stderr, code] = await Promise.all([out, err, child.exited]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    const rows = JSON.parse(stdout) as CopyBenchRow[];
    expect(rows.map((row) => row.name)).toEqual([
      "baseline:tar-big",
      "big-file",
      "baseline:tar-small",
      "small-files",
    ]);
    for (const row of rows) {
      expect(row.runs).toHaveLength(3);
      for (const seconds of row.runs) expect(seconds).toBeGreaterThan(0);
      expect(row.seconds).toBe(median(row.runs));
      expect(row.mbps).toBeCloseTo(row.bytes / 1e6 / row.seconds, 6);
      expect(row.filesPerSec).toBeCloseTo(row.files / row.seconds, 6);
    }
    expect(rows[1]!.bytes).toBe(2 * 1024 * 1024);
    expect(rows[3]!.files).toBe(30);
  }, 60_000);

  test("--rounds takes 1 to 99", async () => {
    const child = Bun.spawn([QRX, "bench", "copy", "--rounds", "0"], { stderr: "pipe" });
    const stderr = await new Response(child.stderr).text();
    expect(await child.exited).not.toBe(0);
    expect(stderr).toContain('"0" is not a number of rounds');
  });

  test("the baseline and ours take turns going first", () => {
    const baselineFirst = (round: number) => inTurns(["baseline", "ours"], round)[0] === "baseline";
    expect([0, 1, 2, 3].map(baselineFirst)).toEqual([true, false, true, false]);
  });

  test("per-round ratios pair each of our runs with the baseline's run of that round", () => {
    const row = (runs: number[]) => ({ runs, seconds: median(runs) }) as CopyBenchRow;
    expect(roundRatios(row([2, 1]), row([1, 2]))).toEqual([0.5, 2]);
    // The verdict is the medians' ratio (1.5 s against 1.5 s here), the rounds are beside it.
    const line =
      "big file vs tar pipeline: 100% of the medians, per round 50% 200% (target >= 80%): met";
    expect(ratioLine(["big file", "tar pipeline"], row([2, 1]), row([1, 2]), 0.8)).toBe(line);
  });
});

describe("stats", () => {
  test("median of any order, odd and even counts; percentile by nearest rank", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    const hundred = Array.from({ length: 100 }, (_, index) => 100 - index);
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 100)).toBe(100);
    expect(percentile([7], 50)).toBe(7);
    expect(() => median([])).toThrow("no values");
  });
});

describe("qrx bench call", () => {
  test("--rounds 2: each throughput row the median of its two runs, rows in turns", async () => {
    const argv = [QRX, "bench", "call", "--json", "--bytes", "4M", "--calls", "1", "--rounds", "2"];
    const child = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
    const out = new Response(child.stdout).text();
    const err = new Response(child.stderr).text();
    const [stdout, stderr, code] = await Promise.all([out, err, child.exited]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    const rows = JSON.parse(stdout) as Array<{ name: string; runs?: number[]; seconds?: number }>;
    const throughput = rows.filter((row) => row.runs !== undefined);
    expect(throughput.map((row) => row.name)).toEqual([...roundOrder(0)]);
    for (const row of throughput) {
      expect(row.runs).toHaveLength(2);
      expect(row.seconds).toBe(median(row.runs!));
    }
  }, 60_000);

  test("the throughput rows rotate: each goes first once in four rounds", () => {
    const firsts = [0, 1, 2, 3].map((round) => roundOrder(round)[0]);
    expect(new Set(firsts).size).toBe(4);
    expect(roundOrder(4)).toEqual(roundOrder(0));
  });
});
