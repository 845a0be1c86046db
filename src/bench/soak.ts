// `qrx bench soak`: calls without a pause for a fixed time in a default lab of its own, to show
// that nothing wears out: the first half one call at a time, the second half 20 at once. Each
// call is `qrexec-client-vm vault test.Echo` in work (the native front end, a new process per
// call, as a user's), with a line of its own that must come back exactly. Per phase: calls,
// failures (with the first messages), calls/s over the whole phase and per interval, and the
// open fds and resident memory of every lab process (admin service, policy daemon, agents,
// daemons) at the start and the end of the phase.
import { runToEnd } from "../io/run-to-end.ts";
import { BenchLab, sample, settledSample, totals, type ProcessSample } from "./lab-probe.ts";

export interface SoakProcessRow {
  label: string;
  pid: number;
  fdsStart: number;
  fdsEnd: number;
  rssStartKb: number;
  rssEndKb: number;
}

export interface SoakTimelinePoint {
  /** Seconds since the phase started, at the end of the interval. */
  atSeconds: number;
  callsPerSecond: number;
  /** Totals over the lab processes at that moment. */
  fds: number;
  rssKb: number;
}

export interface SoakRow {
  name: "sequential" | "concurrent";
  concurrency: number;
  seconds: number;
  calls: number;
  failures: number;
  callsPerSecond: number;
  /** Sum over the lab processes of (fds at the end - fds at the start). */
  fdGrowth: number;
  /** Sum over the lab processes of (RSS at the end - RSS at the start), KiB. */
  rssGrowthKb: number;
  /** The same from the end of the first interval on (Bun's heaps grow on the first calls). */
  rssSteadyGrowthKb: number;
  /** The first few failures, as "exit N: stderr". */
  errors: string[];
  timeline: SoakTimelinePoint[];
  processes: SoakProcessRow[];
}

export interface SoakOptions {
  seconds: number;
  concurrency?: number;
  progress: boolean;
}

const CONCURRENCY = 20;
const WARM_UP_CALLS = 20;
const MAX_ERRORS = 5;

class Phase {
  calls = 0;
  failures = 0;
  readonly errors: string[] = [];
  readonly timeline: SoakTimelinePoint[] = [];

  fail(message: string): void {
    this.failures++;
    if (this.errors.length < MAX_ERRORS) this.errors.push(message);
  }
}

/** One echo call; resolves with null when the line came back and the client exited 0. */
async function echoCall(clientVm: string, env: Record<string, string>, line: string) {
  const stdin = new TextEncoder().encode(line);
  const { code, stdout, stderr } = await runToEnd([clientVm, "vault", "test.Echo"], { env, stdin });
  if (code === 0 && stdout === line) return null;
  const output = JSON.stringify(stdout.slice(0, 80));
  return `exit ${code}, output ${output}: ${stderr.trim().slice(0, 300)}`;
}

async function runPhase(lab: BenchLab, workers: number, seconds: number, intervalS: number) {
  const phase = new Phase();
  const clientVm = lab.which("work", "qrexec-client-vm");
  const env = lab.env("work");
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let intervalCalls = 0;
  const ticker = setInterval(() => {
    const now = totals(sample(lab.processes()));
    const atSeconds = Math.round((performance.now() - started) / 100) / 10;
    phase.timeline.push({ atSeconds, callsPerSecond: intervalCalls / intervalS, ...now });
    intervalCalls = 0;
  }, intervalS * 1000);
  const worker = async (id: number) => {
    for (let n = 0; performance.now() < deadline; n++) {
      const error = await echoCall(clientVm, env, `soak ${id}.${n}\n`);
      phase.calls++;
      intervalCalls++;
      if (error !== null) phase.fail(error);
    }
  };
  try {
    await Promise.all(Array.from({ length: workers }, (_, id) => worker(id)));
  } finally {
    clearInterval(ticker);
  }
  return { phase, elapsedS: (performance.now() - started) / 1000 };
}

function processRows(start: ProcessSample[], end: ProcessSample[]): SoakProcessRow[] {
  return start.map((first, index) => ({
    label: first.label,
    pid: first.pid,
    fdsStart: first.fds,
    fdsEnd: end[index]!.fds,
    rssStartKb: first.rssKb,
    rssEndKb: end[index]!.rssKb,
  }));
}

async function measuredPhase(
  lab: BenchLab,
  name: SoakRow["name"],
  workers: number,
  seconds: number,
): Promise<SoakRow> {
  const intervalS = Math.max(1, Math.round(seconds / 10));
  const start = sample(lab.processes());
  const { phase, elapsedS } = await runPhase(lab, workers, seconds, intervalS);
  const end = await settledSample(start);
  // A process the admin service had to restart has another pid: its figures would mislead.
  await lab.refresh();
  const pids = lab.processes().map((entry) => entry.pid);
  if (start.some((entry, index) => pids[index] !== entry.pid)) {
    phase.fail("a lab process was restarted during the phase (see the lab's admin.log)");
  }
  return {
    name,
    concurrency: workers,
    seconds: Math.round(elapsedS * 10) / 10,
    calls: phase.calls,
    failures: phase.failures,
    callsPerSecond: Math.round((phase.calls / elapsedS) * 10) / 10,
    fdGrowth: totals(end).fds - totals(start).fds,
    rssGrowthKb: totals(end).rssKb - totals(start).rssKb,
    rssSteadyGrowthKb: totals(end).rssKb - (phase.timeline[0]?.rssKb ?? totals(start).rssKb),
    errors: phase.errors,
    timeline: phase.timeline,
    processes: processRows(start, end),
  };
}

export async function runSoak(options: SoakOptions): Promise<SoakRow[]> {
  const say = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  const half = options.seconds / 2;
  say("bench soak: starting a default lab (shm vchans)");
  const lab = await BenchLab.up({ prefix: "qrx-bench-soak-" });
  try {
    // Bun's processes reach their working set on the first calls: measure from after them.
    for (let i = 0; i < WARM_UP_CALLS; i++) {
      const error = await echoCall(lab.which("work", "qrexec-client-vm"), lab.env("work"), "hi\n");
      if (error !== null) throw new Error(`warm-up call failed: ${error} (in ${lab.layout.dir})`);
    }
    say(`bench soak: ${half} s of sequential calls`);
    const sequential = await measuredPhase(lab, "sequential", 1, half);
    say(`  ${describe(sequential)}`);
    const workers = options.concurrency ?? CONCURRENCY;
    say(`bench soak: ${half} s of calls ${workers} at once`);
    const concurrent = await measuredPhase(lab, "concurrent", workers, half);
    say(`  ${describe(concurrent)}`);
    return [sequential, concurrent];
  } finally {
    await lab.down();
  }
}

function describe(row: SoakRow): string {
  return (
    `${row.name}: ${row.calls} calls, ${row.failures} failed, ${row.callsPerSecond} calls/s, ` +
    `fds ${signed(row.fdGrowth)}, RSS ${signed(row.rssGrowthKb)} KiB`
  );
}

function signed(value: number): string {
  return value > 0 ? `+${value}` : String(value);
}

export function printSoak(rows: SoakRow[]): void {
  for (const row of rows) {
    console.log(`${describe(row)} (${row.concurrency} at once, ${row.seconds} s)`);
    const rates = row.timeline.map((point) => point.callsPerSecond.toFixed(0)).join(" ");
    console.log(`  calls/s per ${row.timeline[0]?.atSeconds ?? "-"} s: ${rates}`);
    console.log("  process            fds start -> end    RSS KiB start -> end");
    for (const entry of row.processes) {
      const fds = `${entry.fdsStart} -> ${entry.fdsEnd}`.padEnd(18);
      console.log(`  ${entry.label.padEnd(18)} ${fds} ${entry.rssStartKb} -> ${entry.rssEndKb}`);
    }
    for (const error of row.errors) console.log(`  failure: ${error}`);
  }
}
