// `qrx bench latency`: the fixed cost of everything small, each measured as a user meets it
// (spawn of the program to its exit, output checked), in a default lab of its own, beside the
// floors the rows stand on, measured in the same run: `sh -c true`, `bun -e 0`, and the call
// rows' service run alone. The targets are issue 17's, for a 2-core machine where the first two
// take ~1.8 ms and ~5 ms.

import { runToEnd } from "../io/run-to-end.ts";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { labDown, labLayout, labUp } from "../lab/control.ts";
import { BIN_DIR, domainEnv } from "../lab/environment.ts";
import type { LabLayout } from "../lab/layout.ts";
import { POLICY_ANSWER, startByHand } from "./by-hand.ts";
import { printTable } from "./table.ts";
import { inTurns } from "./rounds.ts";
import { refreshBundles } from "./fresh-build.ts";
import { median, percentile } from "../stats.ts";

export interface LatencyRow {
  name: string;
  calls: number;
  medianMs: number;
  p99Ms: number;
  /** The target for the median, or null for a baseline. */
  targetMs: number | null;
  /** help-slowest: which program's --help it was. */
  program?: string;
  /** latency-vm-vm-policy-program: the policy program's own median run (part of its target). */
  policyProgramMs?: number;
  /**
   * latency-vm-vm-policy-program: the lab's VM->VM call, each timed right after a run of the
   * policy program, as the by-hand call meets the host: its CPUs idle or busy with the program
   * for that long. Not part of the target; it shows how much of a miss is that.
   */
  labAfterProgramMs?: number;
  /**
   * latency-vm-vm-policy-program: `sh -c true` back to back and right after a run of the policy
   * program, timed in the same turns: what the host adds after the program to a run of two
   * plain processes, with none of ours in it. Not part of the target.
   */
  shMs?: number;
  shAfterProgramMs?: number;
  /** A call row: the median of the first `calls` runs in fresh processes, before the warm-up. */
  coldMedianMs?: number;
}

export interface LatencyOptions {
  calls: number;
  /** Untimed calls between a call row's cold runs and its timed ones. */
  warmUp: number;
  progress: boolean;
}

const TARGETS: Record<string, number> = {
  "latency-dom0-vm": 5,
  "latency-vm-dom0": 4,
  "latency-vm-vm": 4,
  "copy-1-byte": 30,
  "dispvm-call": 50,
  "run-true": 15,
  "help-slowest": 15,
};

const LINE = "ping\n";
const BUN = process.execPath;
/** --help runs per program (there are 13 of them). */
const HELP_RUNS_MAX = 10;
/**
 * Why the call rows are timed after a warm-up (`--warm-up`, default 200 calls): the agents and
 * daemons are long-lived Bun processes whose JIT compiles a call's code over its first couple of
 * hundred calls (a fresh lab's VM->VM call: ~5.6 ms over calls 1-40, ~4.7 from call ~200 on),
 * and a VM's agent has served calls long before the one a user times. The cold figure stays in
 * the row (`coldMedianMs`).
 */
/** The rows that are one call through long-lived processes, timed cold and then warm. */
const CALL_ROWS = new Set(["latency-dom0-vm", "latency-vm-dom0", "latency-vm-vm"]);

type Env = Record<string, string>;

interface Run {
  argv: string[];
  env: Env;
  input?: string;
  /** The exact output, or "usage": exit 0, or any exit with a usage text (`--help`). */
  expect: string | { usage: true };
  cwd?: string;
  /** Undoes what a run left behind, untimed (the copied file). */
  after?: () => void;
  /** Untimed, before each run. */
  before?: () => Promise<void>;
}

function checkOutput(run: Run, code: number, stdout: string, stderr: string): boolean {
  if (typeof run.expect === "string") return code === 0 && stdout === run.expect;
  // qfile-agent and qfile-unpacker, which upstream gives no --help, print their usage, exit 1.
  return code === 0 ? stdout.length + stderr.length > 0 : /usage/i.test(stdout + stderr);
}

/**
 * `calls` runs, one after another, after `untimed` runs (one by default: a new lab's Bun
 * transpiler cache is empty, and the first start of each program pays for it). Sorted, in ms.
 */
async function timeRuns(name: string, run: Run, calls: number, untimed = 1): Promise<number[]> {
  const input = new TextEncoder().encode(run.input ?? "");
  const program = Bun.which(run.argv[0]!, { PATH: run.env.PATH }) ?? run.argv[0]!;
  const argv = [program, ...run.argv.slice(1)];
  const times: number[] = [];
  for (let i = -untimed; i < calls; i++) {
    await run.before?.();
    const { code, stdout, stderr, ms } = await runToEnd(argv, {
      env: run.env,
      cwd: run.cwd,
      stdin: input,
    });
    if (i >= 0) times.push(ms);
    if (!checkOutput(run, code, stdout, stderr)) {
      const got = JSON.stringify(stdout.slice(0, 200));
      const problem = `${argv.join(" ")} exited ${code} with ${got}: ${stderr.slice(0, 500)}`;
      throw new Error(`${name}: run ${i + 2}: ${problem} (expected ${JSON.stringify(run.expect)})`);
    }
    run.after?.();
  }
  return times.sort((a, b) => a - b);
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

function row(name: string, times: number[], extra: Partial<LatencyRow> = {}): LatencyRow {
  const figures = {
    calls: times.length,
    medianMs: round(median(times)),
    p99Ms: round(percentile(times, 99)),
  };
  return { name, ...figures, targetMs: TARGETS[name] ?? null, ...extra };
}

/** The lab's rows, each run the way a user of the lab would type it. */
function labRuns(layout: LabLayout, env: (domain: string) => Env): Array<[string, Run]> {
  const incoming = join(layout.home("vault"), "QubesIncoming", "work");
  writeFileSync(join(layout.home("work"), "one-byte"), "x");
  const echo = { input: LINE, expect: LINE };
  const client = (target: string) => ["qrexec-client-vm", target, "test.Echo"];
  const qrx = join(BIN_DIR, "qrx");
  const toVault = ["qrexec-client", "-d", "vault", "DEFAULT:QUBESRPC test.Echo dom0"];
  const copy: Run = {
    argv: ["qvm-copy", "--without-progress", "one-byte"],
    env: env("work"),
    cwd: layout.home("work"),
    expect: "",
    after: () => rmSync(incoming, { recursive: true, force: true }),
  };
  const dispvm = ["qrexec-client-vm", "$dispvm", "test.Add"];
  return [
    ["latency-dom0-vm", { argv: toVault, env: env("dom0"), ...echo }],
    ["latency-vm-dom0", { argv: client("dom0"), env: env("work"), ...echo }],
    ["latency-vm-vm", { argv: client("vault"), env: env("work"), ...echo }],
    ["copy-1-byte", copy],
    ["dispvm-call", { argv: dispvm, env: env("work"), input: "1 2\n", expect: "3\n" }],
    ["run-true", { argv: [qrx, "run", "work", "--", "true"], env: env("dom0"), expect: "" }],
  ];
}

/** Every program in bin/ with --help; the row is the slowest one's. */
type Say = (text: string) => void;

async function helpSlowest(env: Env, calls: number, say: Say): Promise<LatencyRow> {
  const programs = readdirSync(BIN_DIR)
    .filter((name) => !name.endsWith(".sh"))
    .sort();
  let slowest: LatencyRow | null = null;
  for (const program of programs) {
    const run: Run = { argv: [join(BIN_DIR, program), "--help"], env, expect: { usage: true } };
    const times = await timeRuns(`${program} --help`, run, calls);
    say(`    ${program} --help: median ${median(times).toFixed(1)} ms`);
    if (slowest === null || median(times) > slowest.medianMs) {
      slowest = row("help-slowest", times, { program });
    }
  }
  return slowest!;
}

/** The lab's VM->VM row and how it is run, for the by-hand row's figures. */
interface LabCall {
  row: LatencyRow;
  run: Run;
}

async function byHandRow(timing: Timing, lab: LabCall | undefined): Promise<LatencyRow> {
  const system = await startByHand();
  try {
    const argv = [...system.clientArgv, "vault", "test.Echo"];
    const env = system.callEnv;
    const call: Run = { argv, env, input: LINE, expect: LINE };
    const name = "latency-vm-vm-policy-program";
    const cold = await timeRuns(name, call, timing.calls);
    await timeRuns(`${name} (warm-up)`, call, 0, timing.warmUp);
    const evaluate: Run = { argv: system.policyArgv, env, expect: POLICY_ANSWER };
    await timeRuns("policy program", evaluate, 0);
    // Taking turns: the bound is made of the program's runs, which move with the host as much.
    const rows: Array<[string, Run]> = [
      [name, call],
      ["policy program", evaluate],
    ];
    const program = async () => void (await runToEnd(system.policyArgv, { env }));
    const sh: Run = { argv: ["sh", "-c", "true"], env, expect: "" };
    rows.push(["sh", sh], ["sh after the policy program", { ...sh, before: program }]);
    if (lab) rows.push(["latency-vm-vm after the policy program", { ...lab.run, before: program }]);
    const [times, policyRuns, shRuns, shAfter, afterProgram] = await takeTurns(rows, timing.calls);
    const policyProgramMs = round(median(policyRuns!));
    const targetMs = lab ? round(lab.row.medianMs + policyProgramMs) : null;
    const figures = { targetMs, policyProgramMs, coldMedianMs: round(median(cold)) };
    const host = { shMs: round(median(shRuns!)), shAfterProgramMs: round(median(shAfter!)) };
    const after = afterProgram ? { labAfterProgramMs: round(median(afterProgram)) } : {};
    return { ...row(name, times!), ...figures, ...host, ...after };
  } finally {
    await system.stop();
  }
}

interface Timing {
  calls: number;
  warmUp: number;
}

/** Runs per turn when rows take turns. */
const CALLS_PER_TURN = 5;

/**
 * `calls` timed runs of each row, the rows taking turns a few runs at a time, so that a slow
 * spell of the host (they come and go over seconds here) falls on all of them alike rather than
 * on whichever row it met. Sorted, per row.
 */
async function takeTurns(rows: Array<[string, Run]>, calls: number): Promise<number[][]> {
  const times = rows.map((): number[] => []);
  const indices = rows.map((_, index) => index);
  for (let done = 0, round = 0; done < calls; done += CALLS_PER_TURN, round++) {
    const turn = Math.min(CALLS_PER_TURN, calls - done);
    for (const index of inTurns(indices, round)) {
      const [name, run] = rows[index]!;
      times[index]!.push(...(await timeRuns(name, run, turn, 0)));
    }
  }
  return times.map((list) => list.sort((a, b) => a - b));
}

/** The call rows: each one's first `calls` runs (cold), every row's warm-up, then `takeTurns`. */
async function timeCallRows(
  rows: Array<[string, Run]>,
  timing: Timing,
): Promise<Map<string, { cold: number[]; warm: number[] }>> {
  const cold: number[][] = [];
  for (const [name, run] of rows) cold.push(await timeRuns(name, run, timing.calls));
  for (const [name, run] of rows) await timeRuns(`${name} (warm-up)`, run, 0, timing.warmUp);
  const warm = await takeTurns(rows, timing.calls);
  return new Map(rows.map(([name], index) => [name, { cold: cold[index]!, warm: warm[index]! }]));
}

type Recorder = (entry: LatencyRow) => void;

async function labRows(timing: Timing, say: Say, record: Recorder): Promise<void> {
  const { calls } = timing;
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const layout = labLayout(mkdtempSync(join(base, "qrx-bench-latency-")));
  say(`starting a default lab in ${layout.dir}; ${calls} runs per row`);
  try {
    const status = await labUp(layout, { isolation: "none" });
    const transport = status.transport === "socket" ? "socket" : "shm";
    const envOf = (domain: (typeof status.domains)[number]) => domainEnv(layout, domain, transport);
    const envs = new Map(status.domains.map((domain) => [domain.name, envOf(domain)]));
    const env = (name: string) => envs.get(name)!;
    // The call rows' service run alone in vault's environment: what each call row pays besides
    // ours (two dynamically linked programs, sh and cat).
    const service = join(layout.rpcDir("vault"), "test.Echo");
    const floors: Array<[string, Run]> = [
      ["baseline:sh", { argv: ["sh", "-c", "true"], env: env("dom0"), expect: "" }],
      ["baseline:bun-start", { argv: [BUN, "-e", "0"], env: env("dom0"), expect: "" }],
      ["baseline:service", { argv: [service], env: env("vault"), input: LINE, expect: LINE }],
    ];
    const runs = [...floors, ...labRuns(layout, env)];
    const callRows = runs.filter(([name]) => CALL_ROWS.has(name));
    const timed = await timeCallRows(callRows, timing);
    let lab: LabCall | undefined;
    for (const [name, run] of runs) {
      const call = timed.get(name);
      const entry = call
        ? row(name, call.warm, { coldMedianMs: round(median(call.cold)) })
        : row(name, await timeRuns(name, run, calls));
      record(entry);
      if (name === "latency-vm-vm") lab = { row: entry, run };
    }
    say("  --help of every program:");
    record(await helpSlowest(env("work"), Math.min(calls, HELP_RUNS_MAX), say));
    // While the lab is up: the by-hand row also times the lab's call after the policy program.
    say("  the README's by-hand two-domain set-up, policy program and all:");
    record(await byHandRow(timing, lab));
  } finally {
    // A lab that fails to go down must not hide the bench's own result or error.
    await labDown(layout).catch(() => {});
    rmSync(layout.dir, { recursive: true, force: true });
  }
}

export async function runLatencyBench(options: LatencyOptions): Promise<LatencyRow[]> {
  const rows: LatencyRow[] = [];
  const say = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  const record = (entry: LatencyRow) => {
    rows.push(entry);
    const figures = `median ${entry.medianMs.toFixed(2)} ms, p99 ${entry.p99Ms.toFixed(2)} ms`;
    say(`  ${entry.name}: ${figures} (${entry.calls} runs)`);
  };
  const rebuilt = refreshBundles();
  if (rebuilt !== "") say(rebuilt);
  await labRows(options, say, record);
  return rows;
}

function tableLine(entry: LatencyRow): string[] {
  const { targetMs, medianMs, program, policyProgramMs: policy, coldMedianMs: cold } = entry;
  const afterProgram = entry.labAfterProgramMs;
  const verdict = targetMs === null ? "" : medianMs <= targetMs ? "met" : "MISSED";
  const notes = [
    program,
    policy !== undefined ? `policy program ${policy.toFixed(1)} ms` : undefined,
    afterProgram !== undefined ? `lab call after it ${afterProgram.toFixed(2)} ms` : undefined,
    entry.shAfterProgramMs !== undefined
      ? `sh -c true ${entry.shMs!.toFixed(2)} ms, after it ${entry.shAfterProgramMs.toFixed(2)} ms`
      : undefined,
    cold !== undefined ? `cold ${cold.toFixed(2)} ms` : undefined,
  ].filter((text) => text !== undefined);
  const note = notes.length > 0 ? ` (${notes.join(", ")})` : "";
  const target = targetMs === null ? "-" : targetMs.toFixed(1);
  const figures = [String(entry.calls), medianMs.toFixed(2), entry.p99Ms.toFixed(2), target];
  return [entry.name + note, ...figures, verdict];
}

export function printLatencyBench(rows: LatencyRow[]): void {
  const table = [["name", "runs", "median ms", "p99 ms", "target ms", ""], ...rows.map(tableLine)];
  printTable(table);
  console.log("each run: spawn of the program to its exit, its output checked");
  console.log(
    "call rows: timed after a warm-up through the same processes (--warm-up); " +
      "cold: their first runs in fresh processes",
  );
}
