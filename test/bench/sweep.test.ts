// qrx bench sweep end to end: its JSON rows and SVG chart, and a direct measurement beside it.
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { sweepSvg, type SweepRow } from "../../bench/sweep.ts";
import { TestLab } from "../helpers/lab.ts";
import { tempDir } from "../helpers/paths.ts";

const QRX = join(import.meta.dir, "..", "..", "bin", "qrx");
const out = tempDir("qrx-sweep-test-");
afterAll(() => out.remove());

/** A strict-enough XML check: one root, every tag closed in order, attributes quoted. */
function wellFormedXml(text: string): string | null {
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let roots = 0;
  for (const match of text.matchAll(tag)) {
    const between = text.slice(last, match.index);
    if (between.includes("<") || between.includes(">")) return `stray markup before offset ${match.index}`;
    last = match.index! + match[0].length;
    const [, closing, name, , selfClosing] = match;
    if (closing) {
      if (stack.pop() !== name) return `</${name}> does not close the open element`;
    } else if (!selfClosing) {
      if (stack.length === 0) roots++;
      stack.push(name!);
    } else if (stack.length === 0) roots++;
  }
  if (text.slice(last).trim() !== "") return "text after the root element";
  if (stack.length > 0) return `unclosed <${stack.at(-1)}>`;
  return roots === 1 ? null : `${roots} root elements`;
}

test("the sweep writes a row per size, direction and concurrency, agreeing with a direct measurement, and a valid chart", async () => {
  const json = join(out.path, "rows.json");
  const svg = join(out.path, "chart.svg");
  const run = Bun.spawn([QRX, "bench", "sweep", "--sizes", "4K,64K", "--concurrency", "1", "--bytes", "48M", "--json", json, "--plot", svg], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
  expect(code).toBe(0);
  expect(stderr).toContain("[5/5]");
  expect(stdout).toMatch(/concurrency 1; baseline 3-hop pipe: \d+ MB\/s/);
  const rows = JSON.parse(readFileSync(json, "utf8")) as SweepRow[];
  expect(rows.map((row) => `${row.name}@${row.ringBytes}x${row.concurrency}`)).toEqual([
    "baseline:pipe3@0x1",
    "to-service@4096x1",
    "from-service@4096x1",
    "to-service@65536x1",
    "from-service@65536x1",
  ]);
  for (const row of rows) {
    expect(row.bytes).toBe(48 * 1024 * 1024);
    expect(row.mbps).toBeCloseTo(row.bytes / 1e6 / row.seconds, 6);
    expect(row.cpuSecondsPerGiB).toBeGreaterThan(0);
  }

  // The same call, timed directly in a lab of our own: the sweep's number must be of its order.
  const lab = new TestLab("/dev/shm");
  try {
    await lab.up();
    const started = performance.now();
    const direct = await lab.run("work", ["sh", "-c", "head -c 50331648 /dev/zero | qrexec-client-vm --buffer-size=65536 vault test.Sink"]);
    const mbps = 48 * 1024 * 1024 / 1e6 / ((performance.now() - started) / 1000);
    expect(direct).toMatchObject({ code: 0, stdout: "50331648\n" });
    const swept = rows.find((row) => row.name === "to-service" && row.ringBytes === 65536)!.mbps;
    // Generous: the direct run includes two process starts, and the suite shares 2 cores (a
    // factor of 3 failed under load); a wrong unit or a broken measurement is off by far more.
    expect(swept / mbps).toBeGreaterThan(1 / 10);
    expect(swept / mbps).toBeLessThan(10);
  } finally {
    await lab.remove();
  }

  const chart = readFileSync(svg, "utf8");
  expect(wellFormedXml(chart)).toBeNull();
  expect(chart).toStartWith('<svg xmlns="http://www.w3.org/2000/svg"');
  expect(chart.match(/<polyline /g)?.length).toBe(2);
  expect(chart).toContain(">to-service<");
  expect(chart).toContain(">from-service<");
  expect(chart).toContain(">3-hop pipe<");
  expect(chart).toContain("vchan ring size per direction");
}, 120_000);

test("the chart draws every concurrency and escapes its title", () => {
  const row = (name: SweepRow["name"], ringBytes: number, concurrency: number, mbps: number): SweepRow => ({ name, ringBytes, concurrency, bytes: 1, seconds: 1, mbps, cpuSecondsPerGiB: 1 });
  const rows = [row("baseline:pipe3", 0, 1, 900), row("to-service", 1024, 1, 50), row("to-service", 1 << 20, 1, 800), row("baseline:pipe3", 0, 4, 1200), row("to-service", 1024, 4, 70), row("to-service", 1 << 20, 4, 700)];
  const chart = sweepSvg(rows, "a < b & c");
  expect(wellFormedXml(chart)).toBeNull();
  expect(chart).toContain("a &lt; b &amp; c");
  expect(chart.match(/<polyline /g)?.length).toBe(2);
  expect(chart).toContain(">to-service, 4 at once<");
  expect(chart).toContain(">3-hop pipe, 1 at once<");
  expect(wellFormedXml("<svg><g></svg>")).not.toBeNull();
});
