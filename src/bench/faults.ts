// `qrx bench faults`: the fault matrix. In a fresh default lab per row, `work` sends 256 MiB to a
// service in `vault` that reads at most 64 MiB/s (so the call lasts ~4 s), and once the service
// has read a quarter of it one process is killed with SIGKILL: the caller (the native
// qrexec-client-vm front end, or the Bun CLI with QRX_CLIENT_VM_HOST=off), either agent, either
// daemon, the policy daemon, or the service. Per row: how the caller ended (exit code or signal)
// and how long after the kill, when the service ended, how many bytes the service counted, how
// long until a new call from work to vault succeeds, and what was left behind once everything
// settled: processes, fds and shared-memory mappings of the lab's processes that were not killed
// (against a sample taken just before the call), and vchan rendezvous sockets.
import { gather, runToEnd, type Finished } from "../io/run-to-end.ts";
import { closeSync, openSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BenchLab, descendants, findLeaks, isAlive, snapshot, waitUntil } from "./lab-probe.ts";

export const VICTIMS = [
  "none",
  "caller",
  "caller-bun",
  "source-agent",
  "source-agent-bun",
  "source-daemon",
  "policy-daemon",
  "target-daemon",
  "target-agent",
  "service",
] as const;
export type Victim = (typeof VICTIMS)[number];

export interface FaultRow {
  victim: Victim;
  /** "exit N", "signal SIGKILL", or "hung" (still running 30 s after the kill). */
  caller: string;
  /** Kill to the caller's exit; null when it hung. */
  callerEndedMs: number | null;
  callerMessage: string;
  /** Kill to the service's exit; null when it was still running 30 s after the kill. */
  serviceEndedMs: number | null;
  /** Bytes the service counted (its output, as the caller received it); null when none came. */
  delivered: number | null;
  /** Kill to the first new call from work to vault that succeeded (tried from the kill on, one
   * after another, beside the struck call); null: none in 30 s. */
  recoveredMs: number | null;
  /** New calls that failed before that one, and how the first of them failed. */
  failedNewCalls: number;
  firstFailure: string;
  /** What was left behind once the lab settled ([] when nothing). */
  leaks: string[];
}

export interface FaultOptions {
  bytes: number;
  victims: Victim[];
  progress: boolean;
}

const RATE_BYTES_PER_S = 64 << 20;
const DEADLINE_MS = 30_000;
/** The paced reader: counts its input, at most RATE bytes/s, and prints the count at EOF. */
const SLOW_SINK = `#!/usr/bin/env python3
# fault.Sink: reads stdin at most ${RATE_BYTES_PER_S} bytes/s and prints how many bytes came.
import sys, time
total, start, buf = 0, time.monotonic(), bytearray(1 << 20)
while True:
    n = sys.stdin.buffer.readinto(buf)
    if not n:
        break
    total += n
    ahead = total / ${RATE_BYTES_PER_S} - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print(total, flush=True)
`;

interface Call {
  child: Subprocess<"ignore" | number, "pipe", "pipe">;
  output: Promise<Finished>;
}

function startCall(lab: BenchLab, input: string, env: Record<string, string>): Call {
  const inputFd = openSync(input, "r");
  try {
    const child = Bun.spawn([lab.which("work", "qrexec-client-vm"), "vault", "fault.Sink"], {
      env,
      stdin: inputFd,
      stdout: "pipe",
      stderr: "pipe",
    });
    return { child, output: gather(child) };
  } finally {
    closeSync(inputFd);
  }
}

/** Bytes the process has read (rchar), or -1. */
function bytesRead(pid: number): number {
  try {
    const match = /^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
    return match ? Number(match[1]) : -1;
  } catch {
    return -1;
  }
}

/** The service process of the call (a descendant of vault's agent running fault.Sink). */
function servicePid(lab: BenchLab): number | null {
  const found = descendants(lab.pid("vault.agent")).find((p) => p.cmdline.includes("fault.Sink"));
  return found?.pid ?? null;
}

function victimPid(lab: BenchLab, victim: Victim, call: Call, service: number): number | null {
  switch (victim) {
    case "none":
      return null;
    case "caller":
    case "caller-bun":
      return call.child.pid;
    case "source-agent":
    case "source-agent-bun":
      return lab.pid("work.agent");
    case "source-daemon":
      return lab.pid("work.daemon");
    case "policy-daemon":
      return lab.pid("policy-daemon");
    case "target-daemon":
      return lab.pid("vault.daemon");
    case "target-agent":
      return lab.pid("vault.agent");
    case "service":
      return service;
  }
}

/** A new echo call from work to vault: null when it worked, else how it failed. */
async function echoCall(lab: BenchLab): Promise<string | null> {
  const argv = [lab.which("work", "qrexec-client-vm"), "vault", "test.Echo"];
  const stdin = new TextEncoder().encode("ping\n");
  const { code, stdout: out, stderr: err } = await runToEnd(argv, { env: lab.env("work"), stdin });
  if (code === 0 && out === "ping\n") return null;
  return `exit ${code}${err.trim() ? `: ${err.trim().split("\n")[0]}` : ""}`;
}

function callerEnd(child: Subprocess): string {
  if (child.signalCode !== null) return `signal ${child.signalCode}`;
  return child.exitCode === null ? "hung" : `exit ${child.exitCode}`;
}

function formatBytes(bytes: number): string {
  return bytes % (1 << 20) === 0 ? `${bytes >> 20} MiB` : `${bytes} B`;
}

/** Starts the call, waits until the service has read a quarter, kills the victim. */
async function strike(lab: BenchLab, victim: Victim, input: string, bytes: number) {
  const env = lab.env("work");
  if (victim.endsWith("-bun")) env.QRX_CLIENT_VM_HOST = "off";
  const call = startCall(lab, input, env);
  let service: number | null = null;
  const reached = await waitUntil(
    () => {
      service ??= servicePid(lab);
      return service !== null && bytesRead(service) >= bytes / 4;
    },
    DEADLINE_MS,
    5,
  );
  if (!reached || service === null) {
    call.child.kill("SIGKILL");
    const { stderr } = await call.output;
    throw new Error(`${victim}: the call did not get going: ${stderr} (lab in ${lab.layout.dir})`);
  }
  const target = victimPid(lab, victim, call, service);
  const killedAt = performance.now();
  if (target !== null) process.kill(target, "SIGKILL");
  return { call, service: service as number, killedAt };
}

async function measureRow(lab: BenchLab, victim: Victim, bytes: number): Promise<FaultRow> {
  const input = join(lab.layout.dir, "input");
  writeFileSync(input, "");
  truncateSync(input, bytes);
  const problem = await echoCall(lab);
  if (problem !== null) throw new Error(`the lab in ${lab.layout.dir} does not answer: ${problem}`);
  const before = await snapshot(lab);
  const { call, service, killedAt } = await strike(lab, victim, input, bytes);
  const since = () => Math.round(performance.now() - killedAt);
  let serviceEndedMs: number | null = null;
  const serviceWatch = waitUntil(() => !isAlive(service), DEADLINE_MS, 5).then((gone) => {
    serviceEndedMs = gone ? since() : null;
  });
  // New calls are tried from the kill on, while the struck call winds down.
  const recovery = recoveryTime(lab, since);
  const callerEnded = call.child.exited.then(since);
  const exited = await within(callerEnded, DEADLINE_MS);
  if (exited === null) call.child.kill("SIGKILL");
  const { stdout, stderr } = await call.output;
  await serviceWatch;
  if (serviceEndedMs === null) process.kill(service, "SIGKILL");
  const recovered = await recovery;
  const leaks = await findLeaks(lab, before);
  if (serviceEndedMs === null) leaks.unshift("the service was still running 30 s after the kill");
  return {
    victim,
    caller: exited === null ? "hung" : callerEnd(call.child),
    callerEndedMs: exited,
    callerMessage: stderr.trim().split("\n")[0] ?? "",
    serviceEndedMs,
    delivered: /^\d+\n$/.test(stdout) ? Number(stdout) : null,
    ...recovered,
    leaks,
  };
}

/** `promise`'s value, or null when it takes longer than `ms` (no timer is left behind). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: Timer | undefined;
  const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** New calls from the kill on until one succeeds: when it did, and how many failed before. */
async function recoveryTime(lab: BenchLab, since: () => number) {
  const deadline = Date.now() + DEADLINE_MS;
  let failed = 0;
  let firstFailure = "";
  while (Date.now() < deadline) {
    const problem = await echoCall(lab);
    if (problem === null) return { recoveredMs: since(), failedNewCalls: failed, firstFailure };
    if (failed++ === 0) firstFailure = problem;
    await Bun.sleep(20);
  }
  return { recoveredMs: null, failedNewCalls: failed, firstFailure };
}

export async function runFaults(options: FaultOptions): Promise<FaultRow[]> {
  const rows: FaultRow[] = [];
  for (const victim of options.victims) {
    if (options.progress) process.stderr.write(`bench faults: SIGKILL of ${victim}\n`);
    const lab = await BenchLab.up({
      prefix: "qrx-bench-faults-",
      services: { "fault.Sink": SLOW_SINK },
      policy: "fault.Sink * work vault allow\n",
    });
    try {
      rows.push(await measureRow(lab, victim, options.bytes));
    } finally {
      await lab.down();
    }
    if (options.progress) process.stderr.write(`  ${describe(rows.at(-1)!)}\n`);
  }
  return rows;
}

function ms(value: number | null): string {
  return value === null ? "never" : `${value} ms`;
}

function describe(row: FaultRow): string {
  const delivered = row.delivered === null ? "no count" : formatBytes(row.delivered);
  return (
    `caller ${row.caller} after ${ms(row.callerEndedMs)}, service ended after ` +
    `${ms(row.serviceEndedMs)}, ${delivered}, recovered after ${ms(row.recoveredMs)} ` +
    `(${row.failedNewCalls} new calls failed before), ` +
    `leaks: ${row.leaks.length === 0 ? "none" : row.leaks.join("; ")}`
  );
}

export function printFaults(rows: FaultRow[], bytes: number): void {
  const call = formatBytes(bytes);
  console.log(`SIGKILL during a ${call} call from work to vault (times from the kill)`);
  const header = ["killed", "caller", "after", "service ended", "delivered", "new call ok after"];
  header.push("failed new calls", "leaks");
  const table = rows.map((row) => [
    row.victim,
    row.caller,
    ms(row.callerEndedMs),
    ms(row.serviceEndedMs),
    row.delivered === null ? "-" : formatBytes(row.delivered),
    ms(row.recoveredMs),
    String(row.failedNewCalls),
    row.leaks.length === 0 ? "none" : row.leaks.join("; "),
  ]);
  const widths = header.map((cell, i) => Math.max(cell.length, ...table.map((l) => l[i]!.length)));
  for (const line of [header, ...table]) {
    console.log(
      line
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
  }
  for (const row of rows) {
    if (row.callerMessage) console.log(`${row.victim}: the caller said: ${row.callerMessage}`);
    if (row.firstFailure) console.log(`${row.victim}: first failed new call: ${row.firstFailure}`);
  }
}
