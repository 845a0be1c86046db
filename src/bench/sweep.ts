// `qrx bench sweep`: which vchan ring size a call needs (upstream's --buffer-size; MirageOS peers
// have little memory). For every ring size, direction and concurrency, a real call in a default
// lab (on /dev/shm when there is one), beside a 3-hop pipe measured in the same run:
//
//   to-service:    head -c B /dev/zero | qrexec-client-vm --buffer-size=S vault test.Sink
//   from-service:  qrexec-client-vm --buffer-size=S vault test.Source+B < /dev/null
//                  | cat > /dev/null
//   baseline:pipe3 head -c B /dev/zero | cat | cat | cat > /dev/null
//
// With concurrency C, C such calls run at once, each moving B/C bytes; the row is the total over
// the wall time. CPU per GiB counts every process of the data path: the shell pipeline's (bash's
// `times` for its children) and the two agents' (from /proc, before and after).
//
// Each point is measured `samples` times, one after the other; the row carries the medians and
// every sample (the chart draws their spread).
//
// Rows: {name: "to-service"|"from-service"|"baseline:pipe3", ringBytes, concurrency, bytes,
// seconds, mbps, cpuSecondsPerGiB, samples: [{seconds, mbps, cpuSecondsPerGiB}]}. The baseline
// has ringBytes 0.

import { runToEnd } from "../io/run-to-end.ts";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { existsSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { LabStatus } from "../lab/admin.ts";
import { labDown, labLayout, labUp } from "../lab/control.ts";
import { domainEnv } from "../lab/environment.ts";
import { formatSize, sweepSvg } from "./sweep-chart.ts";
import { median } from "../stats.ts";

export { formatSize, sweepSvg };

export type SweepDirection = "to-service" | "from-service";

export interface SweepSample {
  seconds: number;
  mbps: number;
  cpuSecondsPerGiB: number;
}

export interface SweepRow extends SweepSample {
  name: SweepDirection | "baseline:pipe3";
  ringBytes: number;
  concurrency: number;
  bytes: number;
  /** Every measurement of this point; the row's own numbers are their medians. */
  samples: SweepSample[];
}

export interface SweepOptions {
  sizes: number[];
  directions: SweepDirection[];
  concurrency: number[];
  bytes: number;
  /** Measurements per point (default 1). */
  samples?: number;
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
      return (
        `head -c ${bytes} /dev/zero | qrexec-client-vm ` +
        `--buffer-size=${ringBytes} vault test.Sink > /dev/null`
      );
    case "from-service":
      return (
        `qrexec-client-vm --buffer-size=${ringBytes} vault ` +
        `test.Source+${bytes} < /dev/null | cat > /dev/null`
      );
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
  const script =
    `set -o pipefail; pids=; for i in $(seq ${concurrency}); do ( ${command} ) & pids="$pids ` +
    `$!"; done; status=0; for p in $pids; do wait $p || status=1; done; times; exit $status`;
  const agentCpu = () => agents.reduce((sum: number, pid) => sum + cpuSecondsOf(pid), 0);
  const before = agentCpu();
  const { code, stdout, stderr, ms } = await runToEnd(["bash", "-c", script], { env });
  const seconds = ms / 1000;
  if (code !== 0)
    throw new Error(
      `${name} with a ${ringBytes}-byte ring failed (${code}): ${stderr.trim() || stdout.trim()}`,
    );
  const cpuSeconds = childrenCpu(stdout) + (name === "baseline:pipe3" ? 0 : agentCpu() - before);
  return { seconds, cpuSeconds };
}

export function toRow(
  name: SweepRow["name"],
  ringBytes: number,
  concurrency: number,
  bytes: number,
  measured: Measured[],
): SweepRow {
  const moved = Math.floor(bytes / concurrency) * concurrency;
  const samples = measured.map((one) => ({
    seconds: one.seconds,
    mbps: moved / 1e6 / one.seconds,
    cpuSecondsPerGiB: one.cpuSeconds / (moved / GiB),
  }));
  const seconds = median(samples.map((sample) => sample.seconds));
  return {
    name,
    ringBytes,
    concurrency,
    bytes: moved,
    seconds,
    mbps: moved / 1e6 / seconds,
    cpuSecondsPerGiB: median(samples.map((sample) => sample.cpuSecondsPerGiB)),
    samples,
  };
}

/** The lab the sweep runs in, for the sweep itself and for tests that measure beside it. */
export async function withSweepLab<T>(
  work: (env: Record<string, string>, agents: Array<number | null>) => Promise<T>,
): Promise<T> {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const layout = labLayout(mkdtempSync(join(base, "qrx-sweep-")));
  try {
    const status: LabStatus = await labUp(layout, { isolation: "none" });
    const domain = (name: string) => status.domains.find((entry) => entry.name === name)!;
    const env = domainEnv(layout, domain("work"), status.transport === "socket" ? "socket" : "shm");
    return await work(env, [domain("work").agentPid, domain("vault").agentPid]);
  } finally {
    // A lab that fails to go down must not hide the bench's own result or error.
    await labDown(layout).catch(() => {});
    rmSync(layout.dir, { recursive: true, force: true });
  }
}

export async function runSweep(options: SweepOptions): Promise<SweepRow[]> {
  const rows: SweepRow[] = [];
  const total = options.concurrency.length * (1 + options.sizes.length * options.directions.length);
  const samples = options.samples ?? 1;
  const note = (row: SweepRow) => {
    rows.push(row);
    if (!options.progress) return;
    const ring = row.ringBytes === 0 ? "" : ` ring ${formatSize(row.ringBytes)}`;
    const head = `[${rows.length}/${total}] ${row.name}${ring} x${row.concurrency}`;
    const cpu = row.cpuSecondsPerGiB.toFixed(2);
    process.stderr.write(`${head}: ${row.mbps.toFixed(0)} MB/s, ${cpu} CPU s/GiB\n`);
  };
  return withSweepLab(async (env, agents) => {
    const point = async (name: SweepRow["name"], ringBytes: number, concurrency: number) => {
      const measured: Measured[] = [];
      const using = name === "baseline:pipe3" ? [] : agents;
      for (let i = 0; i < samples; i++) {
        measured.push(await measure(env, using, name, ringBytes, options.bytes, concurrency));
      }
      note(toRow(name, ringBytes, concurrency, options.bytes, measured));
    };
    for (const concurrency of options.concurrency) {
      // The baseline once per concurrency, first, on the same machine state as the calls after it.
      await point("baseline:pipe3", 0, concurrency);
      for (const ringBytes of options.sizes) {
        for (const direction of options.directions) await point(direction, ringBytes, concurrency);
      }
    }
    return rows;
  });
}

/** The line of run parameters the chart prints under its title. */
export function sweepParameters(rows: SweepRow[]): string {
  const bytes = Math.max(0, ...rows.map((row) => row.bytes));
  const samples = Math.max(1, ...rows.map((row) => row.samples.length));
  const concurrency = [...new Set(rows.map((row) => row.concurrency))].join(", ");
  const spread = samples > 1 ? " (median, bar: lowest to highest)" : "";
  const moved =
    bytes >= GiB ? `${(bytes / GiB).toFixed(1)} GiB` : `${(bytes / (1 << 20)).toFixed(0)} MiB`;
  return (
    `${moved} per point, ${samples} sample${samples > 1 ? "s" : ""} per point${spread}; ` +
    `concurrency ${concurrency}; ${availableParallelism()} CPUs`
  );
}

export function printSweep(rows: SweepRow[]): void {
  for (const concurrency of [...new Set(rows.map((row) => row.concurrency))]) {
    const baseline = rows.find(
      (row) => row.name === "baseline:pipe3" && row.concurrency === concurrency,
    );
    const pipe = baseline
      ? `; baseline 3-hop pipe: ${baseline.mbps.toFixed(0)} MB/s, ` +
        `${baseline.cpuSecondsPerGiB.toFixed(2)} CPU s/GiB`
      : "";
    console.log(`\nconcurrency ${concurrency}${pipe}`);
    const directions = [
      ...new Set(rows.filter((row) => row.name !== "baseline:pipe3").map((row) => row.name)),
    ];
    console.log(
      [
        "ring".padStart(6),
        ...directions.map((name) => `${name} MB/s (CPU s/GiB)`.padStart(30)),
      ].join("  "),
    );
    for (const size of [
      ...new Set(rows.filter((row) => row.ringBytes > 0).map((row) => row.ringBytes)),
    ]) {
      const cells = directions.map((name) => {
        const row = rows.find(
          (entry) =>
            entry.name === name && entry.ringBytes === size && entry.concurrency === concurrency,
        );
        return (row ? `${row.mbps.toFixed(0)} (${row.cpuSecondsPerGiB.toFixed(2)})` : "-").padStart(
          30,
        );
      });
      console.log([formatSize(size).padStart(6), ...cells].join("  "));
    }
  }
}

export function writeSweepOutputs(rows: SweepRow[], json?: string, plot?: string): void {
  if (json) writeFileSync(json, `${JSON.stringify(rows, null, 2)}\n`);
  if (plot) writeFileSync(plot, sweepSvg(rows, { parameters: sweepParameters(rows) }));
}
