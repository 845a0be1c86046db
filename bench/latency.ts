// `qrx bench latency`: the fixed cost of everything small, each measured as a user meets it
// (spawn of the program to its exit, output checked), in a default lab of its own, beside the
// two floors every row stands on (`sh -c true` and `bun -e 0`) measured in the same run. The
// targets are issue 17's, for a 2-core machine where those two take ~1.8 ms and ~5 ms.

import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { labDown, labLayout, labUp } from "../src/lab/control.ts";
import { BIN_DIR, domainEnv } from "../src/lab/environment.ts";
import type { LabLayout } from "../src/lab/layout.ts";
import { startByHand } from "./by-hand.ts";

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
}

export interface LatencyOptions {
  calls: number;
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

interface Run {
  argv: string[];
  env: Record<string, string>;
  input?: string;
  expect: string;
  cwd?: string;
  /** Undoes what a run left behind, untimed (the copied file). */
  after?: () => void;
}

/**
 * `calls` runs, one after another, after one untimed run (a new lab's Bun transpiler cache is
 * empty: the first start of each program pays for it). Each must print `expect` and exit 0.
 * Sorted times in ms.
 */
async function timeRuns(name: string, run: Run, calls: number): Promise<number[]> {
  const input = new TextEncoder().encode(run.input ?? "");
  const argv = [Bun.which(run.argv[0]!, { PATH: run.env.PATH }) ?? run.argv[0]!, ...run.argv.slice(1)];
  const times: number[] = [];
  for (let i = -1; i < calls; i++) {
    const start = performance.now();
    const child = Bun.spawn(argv, { env: run.env, cwd: run.cwd, stdin: input, stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    if (i >= 0) times.push(performance.now() - start);
    if (code !== 0 || stdout !== run.expect) {
      throw new Error(`${name}: run ${i + 1} of ${argv.join(" ")} exited ${code} with ${JSON.stringify(stdout.slice(0, 200))} (expected ${JSON.stringify(run.expect.slice(0, 200))}): ${stderr.slice(0, 500)}`);
    }
    run.after?.();
  }
  return times.sort((a, b) => a - b);
}

function median(sorted: number[]): number {
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function p99(sorted: number[]): number {
  return sorted[Math.max(0, Math.ceil(0.99 * sorted.length) - 1)]!;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

function row(name: string, times: number[], extra: Partial<LatencyRow> = {}): LatencyRow {
  const targetMs = TARGETS[name] ?? null;
  return { name, calls: times.length, medianMs: round(median(times)), p99Ms: round(p99(times)), targetMs, ...extra };
}

/** The lab's rows, each run the way a user of the lab would type it. */
function labRuns(layout: LabLayout, env: (domain: string) => Record<string, string>): Array<[string, Run]> {
  const incoming = join(layout.home("vault"), "QubesIncoming", "work");
  writeFileSync(join(layout.home("work"), "one-byte"), "x");
  return [
    ["latency-dom0-vm", { argv: ["qrexec-client", "-d", "vault", "DEFAULT:QUBESRPC test.Echo dom0"], env: env("dom0"), input: LINE, expect: LINE }],
    ["latency-vm-dom0", { argv: ["qrexec-client-vm", "dom0", "test.Echo"], env: env("work"), input: LINE, expect: LINE }],
    ["latency-vm-vm", { argv: ["qrexec-client-vm", "vault", "test.Echo"], env: env("work"), input: LINE, expect: LINE }],
    [
      "copy-1-byte",
      {
        argv: ["qvm-copy", "--without-progress", "one-byte"],
        env: env("work"),
        cwd: layout.home("work"),
        expect: "",
        after: () => rmSync(incoming, { recursive: true, force: true }),
      },
    ],
    ["dispvm-call", { argv: ["qrexec-client-vm", "$dispvm", "test.Add"], env: env("work"), input: "1 2\n", expect: "3\n" }],
    ["run-true", { argv: [join(BIN_DIR, "qrx"), "run", "work", "--", "true"], env: env("dom0"), expect: "" }],
  ];
}

/** Every program in bin/ with --help; the row is the slowest one's. */
async function helpSlowest(env: Record<string, string>, calls: number, say: (text: string) => void): Promise<LatencyRow> {
  const programs = readdirSync(BIN_DIR).filter((name) => !name.endsWith(".sh")).sort();
  let slowest: LatencyRow | null = null;
  for (const program of programs) {
    const argv = [join(BIN_DIR, program), "--help"];
    const times = await timeRunsAnyOutput(program, argv, env, calls);
    say(`    ${program} --help: median ${median(times).toFixed(1)} ms`);
    if (slowest === null || median(times) > slowest.medianMs) slowest = row("help-slowest", times, { program });
  }
  return slowest!;
}

/**
 * --help must exit 0 and print something; qfile-agent and qfile-unpacker, which upstream gives
 * no --help, print their usage and exit 1.
 */
async function timeRunsAnyOutput(name: string, argv: string[], env: Record<string, string>, calls: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = -1; i < calls; i++) {
    const start = performance.now();
    const child = Bun.spawn(argv, { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    if (i >= 0) times.push(performance.now() - start);
    const usage = /usage/i.test(stdout + stderr);
    if (!usage && (code !== 0 || stdout.length + stderr.length === 0)) throw new Error(`${name} --help exited ${code}: ${stderr.slice(0, 300)}`);
  }
  return times.sort((a, b) => a - b);
}

async function byHandRow(calls: number, vmVm: LatencyRow | undefined): Promise<LatencyRow> {
  const system = await startByHand();
  try {
    const call = { argv: [...system.clientArgv, "vault", "test.Echo"], env: system.callEnv, input: LINE, expect: LINE };
    const times = await timeRuns("latency-vm-vm-policy-program", call, calls);
    const policy = await timeRuns("policy program", { argv: system.policyArgv, env: system.callEnv, expect: "result=allow\n" }, calls);
    const policyProgramMs = round(median(policy));
    const targetMs = vmVm ? round(vmVm.medianMs + policyProgramMs) : null;
    return { ...row("latency-vm-vm-policy-program", times), targetMs, policyProgramMs };
  } finally {
    await system.stop();
  }
}

export async function runLatencyBench(options: LatencyOptions): Promise<LatencyRow[]> {
  const rows: LatencyRow[] = [];
  const say = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  const record = (entry: LatencyRow) => {
    rows.push(entry);
    say(`  ${entry.name}: median ${entry.medianMs.toFixed(2)} ms, p99 ${entry.p99Ms.toFixed(2)} ms (${entry.calls} runs)`);
  };
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const layout = labLayout(mkdtempSync(join(base, "qrx-bench-latency-")));
  say(`starting a default lab in ${layout.dir}; ${options.calls} runs per row`);
  try {
    const status = await labUp(layout);
    const transport = status.transport === "socket" ? "socket" : "shm";
    const envs = new Map(status.domains.map((domain) => [domain.name, domainEnv(layout, domain, transport)]));
    const env = (name: string) => envs.get(name)!;
    record(row("baseline:sh", await timeRuns("baseline:sh", { argv: ["sh", "-c", "true"], env: env("dom0"), expect: "" }, options.calls)));
    record(row("baseline:bun-start", await timeRuns("baseline:bun-start", { argv: [BUN, "-e", "0"], env: env("dom0"), expect: "" }, options.calls)));
    for (const [name, run] of labRuns(layout, env)) record(row(name, await timeRuns(name, run, options.calls)));
    say("  --help of every program:");
    record(await helpSlowest(env("work"), Math.min(options.calls, 10), say));
  } finally {
    await labDown(layout).catch(() => {});
    rmSync(layout.dir, { recursive: true, force: true });
  }
  say("  the README's by-hand two-domain set-up, policy program and all:");
  record(await byHandRow(options.calls, rows.find((entry) => entry.name === "latency-vm-vm")));
  return rows;
}

export function printLatencyBench(rows: LatencyRow[]): void {
  const table = [["name", "runs", "median ms", "p99 ms", "target ms", ""]];
  for (const entry of rows) {
    const verdict = entry.targetMs === null ? "" : entry.medianMs <= entry.targetMs ? "met" : "MISSED";
    const note = entry.program ? ` (${entry.program})` : entry.policyProgramMs !== undefined ? ` (policy program ${entry.policyProgramMs.toFixed(1)} ms)` : "";
    const target = entry.targetMs === null ? "-" : entry.targetMs.toFixed(1);
    table.push([entry.name + note, String(entry.calls), entry.medianMs.toFixed(2), entry.p99Ms.toFixed(2), target, verdict]);
  }
  const widths = table[0]!.map((_, column) => Math.max(...table.map((line) => line[column]!.length)));
  for (const line of table) console.log(line.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join("  "));
  console.log("each run: spawn of the program to its exit, its output checked");
}
