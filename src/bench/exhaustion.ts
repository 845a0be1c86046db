// `qrx bench exhaustion`: what a lab does when it is pushed past what it comfortably holds. One
// fresh default lab per scenario; the calls are background jobs of one shell in work (so the
// bench itself holds no fds for them), each recording its exit code, output and error line:
//
// - concurrent-1000: 1,000 test.Echo calls at once from work to vault.
// - nofile-256: both agents' fd limit lowered to 256 (prlimit), then 300 calls at once.
// - service-never-reads: 20 calls each offering 1 GiB to a service that sleeps 10 s without
//   reading its stdin, then exits 0.
// - client-never-reads: 20 calls of test.Source (1 GiB) whose caller's stdout is a pipe into
//   `sleep 10`, which never reads it.
//
// Per scenario: the outcomes (exit codes, the most frequent error lines), the total resident
// memory and fds of the lab's processes before, at the peak (sampled every 100 ms) and after,
// whether the agents survived, whether a new call works afterwards, and what was left behind.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BenchLab, findLeaks, sample, snapshot, totals } from "./lab-probe.ts";

export interface ExhaustionRow {
  name: string;
  calls: number;
  /** Calls that exited 0 with the expected output. */
  ok: number;
  /** "exit N" -> number of calls. */
  outcomes: Record<string, number>;
  /** The most frequent first lines of the callers' stderr, as "N x line". */
  messages: string[];
  /** Wall time of the whole scenario, and of its slowest call. */
  seconds: number;
  slowestCallSeconds: number;
  rssBeforeKb: number;
  rssPeakKb: number;
  rssAfterKb: number;
  fdsBefore: number;
  fdsPeak: number;
  fdsAfter: number;
  agentsSurvived: boolean;
  /** A new call from work to vault succeeded once the scenario was over. */
  recovered: boolean;
  leaks: string[];
}

interface Scenario {
  name: string;
  calls: number;
  /** The bash pipeline of call $i (run in work, output to $i.out, errors to $i.err). */
  command: string;
  /** Where qrexec-client-vm stands in that pipeline: its exit status is the call's. */
  clientAt: number;
  /** What call i must print to count as ok. */
  expect: (i: number) => string;
  prepare?: (lab: BenchLab) => Promise<void>;
}

const GiB = 1 << 30;
const SCENARIOS: Scenario[] = [
  {
    name: "concurrent-1000",
    calls: 1000,
    command: `printf 'call %s\\n' $i | qrexec-client-vm vault test.Echo`,
    clientAt: 1,
    expect: (i) => `call ${i}\n`,
  },
  {
    name: "nofile-256",
    calls: 300,
    command: `printf 'call %s\\n' $i | qrexec-client-vm vault test.Echo`,
    clientAt: 1,
    expect: (i) => `call ${i}\n`,
    prepare: async (lab) => {
      for (const label of ["work.agent", "vault.agent"]) {
        const pid = String(lab.pid(label));
        const argv = ["prlimit", `--pid=${pid}`, "--nofile=256:256"];
        const child = Bun.spawn(argv, { stderr: "pipe" });
        const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
        if (code !== 0) throw new Error(`prlimit failed: ${stderr}`);
      }
    },
  },
  {
    name: "service-never-reads",
    calls: 20,
    command: `head -c ${GiB} /dev/zero | qrexec-client-vm vault exhaust.Stall`,
    clientAt: 1,
    expect: () => "",
  },
  {
    name: "client-never-reads",
    calls: 20,
    command: `qrexec-client-vm vault test.Source+${GiB} | sleep 10`,
    clientAt: 0,
    expect: () => "",
  },
];

export const SCENARIO_NAMES = SCENARIOS.map((scenario) => scenario.name);

/** The bash script that starts every call at once in the background and waits for them all. */
function driver(scenario: Scenario): string {
  // The call's exit status and how long it took (bash's clock: no process per call).
  const status = `echo "\${PIPESTATUS[${scenario.clientAt}]} $t $EPOCHREALTIME" > $i.rc`;
  return [
    `i=0`,
    `while [ $i -lt ${scenario.calls} ]; do`,
    `  { t=$EPOCHREALTIME; ${scenario.command}; ${status}; } > $i.out 2> $i.err &`,
    `  i=$((i + 1))`,
    `done`,
    `wait`,
  ].join("\n");
}

interface Peak {
  rssKb: number;
  fds: number;
}

async function runCalls(lab: BenchLab, scenario: Scenario, dir: string, peak: Peak) {
  const shell = Bun.spawn(["bash", "-c", driver(scenario)], {
    env: lab.env("work"),
    cwd: dir,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  const sampler = setInterval(() => {
    const now = totals(sample(lab.processes()));
    peak.rssKb = Math.max(peak.rssKb, now.rssKb);
    peak.fds = Math.max(peak.fds, now.fds);
  }, 100);
  try {
    const [stderr, code] = await Promise.all([new Response(shell.stderr).text(), shell.exited]);
    if (code !== 0) throw new Error(`the calls' shell exited ${code}: ${stderr}`);
  } finally {
    clearInterval(sampler);
  }
}

function readOr(path: string, otherwise: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return otherwise;
  }
}

/** Outcomes, ok count and the most frequent error lines of the calls in `dir`. */
function tally(scenario: Scenario, dir: string) {
  const outcomes: Record<string, number> = {};
  const lines = new Map<string, number>();
  let ok = 0;
  let slowest = 0;
  for (let i = 0; i < scenario.calls; i++) {
    const [rc = "", start, end] = readOr(join(dir, `${i}.rc`), "")
      .trim()
      .split(" ");
    if (start && end) slowest = Math.max(slowest, Number(end) - Number(start));
    const outcome = rc === "" ? "no exit status" : `exit ${rc}`;
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    if (rc === "0" && readOr(join(dir, `${i}.out`), "") === scenario.expect(i)) ok++;
    const line = readOr(join(dir, `${i}.err`), "")
      .split("\n")[0]!
      .trim();
    if (line !== "") lines.set(line, (lines.get(line) ?? 0) + 1);
  }
  const messages = [...lines.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([line, count]) => `${count} x ${line.slice(0, 160)}`);
  return { ok, outcomes, messages, slowestCallSeconds: Math.round(slowest * 10) / 10 };
}

async function echoWorks(lab: BenchLab): Promise<boolean> {
  const child = Bun.spawn(["sh", "-c", "echo ping | qrexec-client-vm vault test.Echo"], {
    env: lab.env("work"),
    stdout: "pipe",
    stderr: "ignore",
  });
  const [out, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
  return code === 0 && out === "ping\n";
}

async function runScenario(scenario: Scenario): Promise<ExhaustionRow> {
  const lab = await BenchLab.up({
    prefix: "qrx-bench-exhaust-",
    services: { "exhaust.Stall": "#!/bin/sh\n# Never reads its stdin.\nexec sleep 10\n" },
    policy: "exhaust.Stall * work vault allow\n",
  });
  const dir = mkdtempSync(join(lab.layout.dir, "calls-"));
  try {
    if (!(await echoWorks(lab))) throw new Error(`the lab in ${lab.layout.dir} does not answer`);
    await scenario.prepare?.(lab);
    const before = await snapshot(lab);
    const agents = ["work.agent", "vault.agent"].map((label) => [label, lab.pid(label)] as const);
    const peak: Peak = { ...totals(before.samples) };
    const started = performance.now();
    await runCalls(lab, scenario, dir, peak);
    const seconds = Math.round((performance.now() - started) / 100) / 10;
    const recovered = await echoWorks(lab);
    const leaks = await findLeaks(lab, before);
    const after = totals(sample(lab.processes()));
    const agentsSurvived = agents.every(([label, pid]) => lab.pid(label) === pid);
    return {
      name: scenario.name,
      calls: scenario.calls,
      ...tally(scenario, dir),
      seconds,
      rssBeforeKb: totals(before.samples).rssKb,
      rssPeakKb: peak.rssKb,
      rssAfterKb: after.rssKb,
      fdsBefore: totals(before.samples).fds,
      fdsPeak: peak.fds,
      fdsAfter: after.fds,
      agentsSurvived,
      recovered,
      leaks,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await lab.down();
  }
}

export async function runExhaustion(options: { names: string[]; progress: boolean }) {
  const rows: ExhaustionRow[] = [];
  for (const scenario of SCENARIOS.filter((entry) => options.names.includes(entry.name))) {
    if (options.progress) process.stderr.write(`bench exhaustion: ${scenario.name}\n`);
    rows.push(await runScenario(scenario));
    if (options.progress) process.stderr.write(`  ${describe(rows.at(-1)!)}\n`);
  }
  return rows;
}

function describe(row: ExhaustionRow): string {
  const outcomes = Object.entries(row.outcomes).map(([what, n]) => `${n} x ${what}`);
  const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MiB`;
  return (
    `${row.ok}/${row.calls} ok (${outcomes.join(", ")}) in ${row.seconds} s ` +
    `(slowest call ${row.slowestCallSeconds} s); ` +
    `lab RSS ${mb(row.rssBeforeKb)} -> peak ${mb(row.rssPeakKb)} -> ${mb(row.rssAfterKb)}; ` +
    `fds ${row.fdsBefore} -> peak ${row.fdsPeak} -> ${row.fdsAfter}; ` +
    `agents ${row.agentsSurvived ? "survived" : "DIED"}; new call ` +
    `${row.recovered ? "works" : "FAILS"}; ` +
    `leaks: ${row.leaks.length ? row.leaks.join("; ") : "none"}`
  );
}

export function printExhaustion(rows: ExhaustionRow[]): void {
  for (const row of rows) {
    console.log(`${row.name}: ${describe(row)}`);
    for (const message of row.messages) console.log(`  ${message}`);
  }
}
