// `qrx bench sweep`: which vchan ring size a call needs (upstream's --buffer-size; MirageOS peers
// have little memory). For every ring size, direction and concurrency, a real call in a default
// lab (on /dev/shm when there is one), beside a 3-hop pipe measured in the same run:
//
//   to-service:    head -c B /dev/zero | qrexec-client-vm --buffer-size=S vault test.Sink
//   from-service:  qrexec-client-vm --buffer-size=S vault test.Source+B < /dev/null | cat > /dev/null
//   baseline:pipe3 head -c B /dev/zero | cat | cat | cat > /dev/null
//
// With concurrency C, C such calls run at once, each moving B/C bytes; the row is the total over
// the wall time. CPU per GiB counts every process of the data path: the shell pipeline's (bash's
// `times` for its children) and the two agents' (from /proc, before and after).
//
// Rows: {name: "to-service"|"from-service"|"baseline:pipe3", ringBytes, concurrency, bytes,
// seconds, mbps, cpuSecondsPerGiB}. The baseline has ringBytes 0.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LabStatus } from "../src/lab/admin.ts";
import { labDown, labLayout, labUp } from "../src/lab/control.ts";
import { domainEnv } from "../src/lab/environment.ts";

export type SweepDirection = "to-service" | "from-service";

export interface SweepRow {
  name: SweepDirection | "baseline:pipe3";
  ringBytes: number;
  concurrency: number;
  bytes: number;
  seconds: number;
  mbps: number;
  cpuSecondsPerGiB: number;
}

export interface SweepOptions {
  sizes: number[];
  directions: SweepDirection[];
  concurrency: number[];
  bytes: number;
  progress: boolean;
}

const GiB = 1024 ** 3;
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** utime + stime of a process, in seconds (0 when it is gone). */
function cpuSecondsOf(pid: number | null): number {
  if (pid === null) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** bash's `times`: the second line is its children's user and system time. */
function childrenCpu(timesOutput: string): number {
  const lines = timesOutput.trim().split("\n");
  const children = lines[lines.length - 1]!.trim().split(/\s+/);
  return children.reduce((sum, text) => {
    const match = /^(\d+)m([\d.]+)s$/.exec(text);
    return sum + (match ? Number(match[1]) * 60 + Number(match[2]) : 0);
  }, 0);
}

export function sweepCommand(name: SweepRow["name"], ringBytes: number, bytes: number): string {
  switch (name) {
    case "baseline:pipe3":
      return `head -c ${bytes} /dev/zero | cat | cat | cat > /dev/null`;
    case "to-service":
      return `head -c ${bytes} /dev/zero | qrexec-client-vm --buffer-size=${ringBytes} vault test.Sink > /dev/null`;
    case "from-service":
      return `qrexec-client-vm --buffer-size=${ringBytes} vault test.Source+${bytes} < /dev/null | cat > /dev/null`;
  }
}

export interface Measured {
  seconds: number;
  cpuSeconds: number;
}

/** `concurrency` copies of the command at once in one bash, each moving bytes/concurrency. */
export async function measure(
  env: Record<string, string>,
  agents: Array<number | null>,
  name: SweepRow["name"],
  ringBytes: number,
  bytes: number,
  concurrency: number,
): Promise<Measured> {
  const each = Math.floor(bytes / concurrency);
  const command = sweepCommand(name, ringBytes, each);
  const script = `set -o pipefail; pids=; for i in $(seq ${concurrency}); do ( ${command} ) & pids="$pids $!"; done; status=0; for p in $pids; do wait $p || status=1; done; times; exit $status`;
  const agentCpu = () => agents.reduce((sum: number, pid) => sum + cpuSecondsOf(pid), 0);
  const before = agentCpu();
  const started = performance.now();
  const child = Bun.spawn(["bash", "-c", script], { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`${name} with a ${ringBytes}-byte ring failed (${code}): ${stderr.trim() || stdout.trim()}`);
  const cpuSeconds = childrenCpu(stdout) + (name === "baseline:pipe3" ? 0 : agentCpu() - before);
  return { seconds, cpuSeconds };
}

function toRow(name: SweepRow["name"], ringBytes: number, concurrency: number, bytes: number, measured: Measured): SweepRow {
  const moved = Math.floor(bytes / concurrency) * concurrency;
  return {
    name,
    ringBytes,
    concurrency,
    bytes: moved,
    seconds: measured.seconds,
    mbps: moved / 1e6 / measured.seconds,
    cpuSecondsPerGiB: measured.cpuSeconds / (moved / GiB),
  };
}

/** The lab the sweep runs in, for the sweep itself and for tests that measure beside it. */
export async function withSweepLab<T>(work: (env: Record<string, string>, agents: Array<number | null>) => Promise<T>): Promise<T> {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const layout = labLayout(mkdtempSync(join(base, "qrx-sweep-")));
  try {
    const status: LabStatus = await labUp(layout, { isolation: "none" });
    const domain = (name: string) => status.domains.find((entry) => entry.name === name)!;
    const env = domainEnv(layout, domain("work"), status.transport === "socket" ? "socket" : "shm");
    return await work(env, [domain("work").agentPid, domain("vault").agentPid]);
  } finally {
    await labDown(layout).catch(() => {});
    rmSync(layout.dir, { recursive: true, force: true });
  }
}

export async function runSweep(options: SweepOptions): Promise<SweepRow[]> {
  const rows: SweepRow[] = [];
  const total = options.concurrency.length * (1 + options.sizes.length * options.directions.length);
  let done = 0;
  const note = (row: SweepRow) => {
    done++;
    if (!options.progress) return;
    const ring = row.ringBytes === 0 ? "" : ` ring ${formatSize(row.ringBytes)}`;
    process.stderr.write(`[${done}/${total}] ${row.name}${ring} x${row.concurrency}: ${row.mbps.toFixed(0)} MB/s, ${row.cpuSecondsPerGiB.toFixed(2)} CPU s/GiB\n`);
  };
  return withSweepLab(async (env, agents) => {
    for (const concurrency of options.concurrency) {
      // The baseline once per concurrency, first, on the same machine state as the calls after it.
      const baseline = toRow("baseline:pipe3", 0, concurrency, options.bytes, await measure(env, [], "baseline:pipe3", 0, options.bytes, concurrency));
      rows.push(baseline);
      note(baseline);
      for (const ringBytes of options.sizes) {
        for (const direction of options.directions) {
          const row = toRow(direction, ringBytes, concurrency, options.bytes, await measure(env, agents, direction, ringBytes, options.bytes, concurrency));
          rows.push(row);
          note(row);
        }
      }
    }
    return rows;
  });
}

export function formatSize(bytes: number): string {
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)}M`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024}K`;
  return String(bytes);
}

export function printSweep(rows: SweepRow[]): void {
  for (const concurrency of [...new Set(rows.map((row) => row.concurrency))]) {
    const baseline = rows.find((row) => row.name === "baseline:pipe3" && row.concurrency === concurrency);
    console.log(`\nconcurrency ${concurrency}${baseline ? `; baseline 3-hop pipe: ${baseline.mbps.toFixed(0)} MB/s, ${baseline.cpuSecondsPerGiB.toFixed(2)} CPU s/GiB` : ""}`);
    const directions = [...new Set(rows.filter((row) => row.name !== "baseline:pipe3").map((row) => row.name))];
    console.log(["ring".padStart(6), ...directions.map((name) => `${name} MB/s (CPU s/GiB)`.padStart(30))].join("  "));
    for (const size of [...new Set(rows.filter((row) => row.ringBytes > 0).map((row) => row.ringBytes))]) {
      const cells = directions.map((name) => {
        const row = rows.find((entry) => entry.name === name && entry.ringBytes === size && entry.concurrency === concurrency);
        return (row ? `${row.mbps.toFixed(0)} (${row.cpuSecondsPerGiB.toFixed(2)})` : "-").padStart(30);
      });
      console.log([formatSize(size).padStart(6), ...cells].join("  "));
    }
  }
}

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

/**
 * Throughput against ring size (log scale), one line per direction (and concurrency, dashed
 * differently), the 3-hop pipe drawn as a horizontal line: readable without explanation.
 */
export function sweepSvg(rows: SweepRow[], title = "qrexec call throughput by vchan ring size"): string {
  const width = 760;
  const height = 440;
  const margin = { left: 70, right: 190, top: 50, bottom: 55 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const calls = rows.filter((row) => row.name !== "baseline:pipe3");
  const sizes = [...new Set(calls.map((row) => row.ringBytes))].sort((a, b) => a - b);
  const maxMbps = Math.max(1, ...rows.map((row) => row.mbps));
  const yMax = niceCeiling(maxMbps * 1.05);
  const logMin = Math.log2(sizes[0] ?? 1024);
  const logMax = Math.log2(sizes[sizes.length - 1] ?? 1 << 20);
  const x = (bytes: number) => margin.left + (logMax === logMin ? plotW / 2 : ((Math.log2(bytes) - logMin) / (logMax - logMin)) * plotW);
  const y = (mbps: number) => margin.top + plotH - (mbps / yMax) * plotH;
  const colors: Record<string, string> = { "to-service": "#1f77b4", "from-service": "#d62728", "baseline:pipe3": "#555555" };
  const dashes = ["", "6 3", "2 3", "10 3 2 3"];
  const concurrencies = [...new Set(rows.map((row) => row.concurrency))].sort((a, b) => a - b);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`);
  parts.push(`<text x="${margin.left}" y="28" font-size="16" font-weight="bold">${escapeXml(title)}</text>`);
  // Grid and axes.
  for (let step = 0; step <= 5; step++) {
    const value = (yMax / 5) * step;
    parts.push(`<line x1="${margin.left}" y1="${y(value).toFixed(1)}" x2="${margin.left + plotW}" y2="${y(value).toFixed(1)}" stroke="#e0e0e0"/>`);
    parts.push(`<text x="${margin.left - 8}" y="${(y(value) + 4).toFixed(1)}" text-anchor="end">${value.toFixed(0)}</text>`);
  }
  for (const size of sizes) {
    parts.push(`<line x1="${x(size).toFixed(1)}" y1="${margin.top}" x2="${x(size).toFixed(1)}" y2="${margin.top + plotH}" stroke="#f0f0f0"/>`);
    parts.push(`<text x="${x(size).toFixed(1)}" y="${margin.top + plotH + 18}" text-anchor="middle">${formatSize(size)}</text>`);
  }
  parts.push(`<line x1="${margin.left}" y1="${margin.top + plotH}" x2="${margin.left + plotW}" y2="${margin.top + plotH}" stroke="black"/>`);
  parts.push(`<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${margin.top + plotH}" stroke="black"/>`);
  parts.push(`<text x="${margin.left + plotW / 2}" y="${height - 12}" text-anchor="middle">vchan ring size per direction (qrexec-client-vm --buffer-size), log scale</text>`);
  parts.push(`<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">throughput, MB/s</text>`);
  // Lines and legend.
  let legendY = margin.top + 10;
  const legend = (color: string, dash: string, label: string) => {
    parts.push(`<line x1="${margin.left + plotW + 15}" y1="${legendY}" x2="${margin.left + plotW + 45}" y2="${legendY}" stroke="${color}" stroke-width="2.5"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`);
    parts.push(`<text x="${margin.left + plotW + 52}" y="${legendY + 4}">${escapeXml(label)}</text>`);
    legendY += 20;
  };
  concurrencies.forEach((concurrency, index) => {
    const dash = dashes[index % dashes.length]!;
    const suffix = concurrencies.length > 1 ? `, ${concurrency} at once` : "";
    for (const direction of ["to-service", "from-service"] as const) {
      const points = calls.filter((row) => row.name === direction && row.concurrency === concurrency).sort((a, b) => a.ringBytes - b.ringBytes);
      if (points.length === 0) continue;
      const path = points.map((row) => `${x(row.ringBytes).toFixed(1)},${y(row.mbps).toFixed(1)}`).join(" ");
      parts.push(`<polyline points="${path}" fill="none" stroke="${colors[direction]}" stroke-width="2.5"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`);
      for (const row of points) parts.push(`<circle cx="${x(row.ringBytes).toFixed(1)}" cy="${y(row.mbps).toFixed(1)}" r="3" fill="${colors[direction]}"/>`);
      legend(colors[direction]!, dash, `${direction}${suffix}`);
    }
    const baseline = rows.find((row) => row.name === "baseline:pipe3" && row.concurrency === concurrency);
    if (baseline) {
      parts.push(`<line x1="${margin.left}" y1="${y(baseline.mbps).toFixed(1)}" x2="${margin.left + plotW}" y2="${y(baseline.mbps).toFixed(1)}" stroke="${colors["baseline:pipe3"]}" stroke-width="1.5" stroke-dasharray="${dash || "4 4"}"/>`);
      legend(colors["baseline:pipe3"]!, dash || "4 4", `3-hop pipe${suffix}`);
    }
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

function niceCeiling(value: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

export function writeSweepOutputs(rows: SweepRow[], json?: string, plot?: string): void {
  if (json) writeFileSync(json, `${JSON.stringify(rows, null, 2)}\n`);
  if (plot) writeFileSync(plot, sweepSvg(rows));
}
