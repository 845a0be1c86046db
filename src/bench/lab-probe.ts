// The reliability benches' common ground: a default lab of their own on /dev/shm (with extra
// services and policy), the lab's long-lived processes, and what /proc says about them (open fds,
// resident memory), so a bench can tell whether they stay flat, and what a call left behind.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LabStatus } from "../lab/admin.ts";
import { labDown, labLayout, labStatus, labUp } from "../lab/control.ts";
import { domainEnv } from "../lab/environment.ts";
import type { LabLayout } from "../lab/layout.ts";

/** How long a lab may take to restart what died, and a survivor to close a call's fds. */
const SETTLE_MS = 30_000;

export interface BenchLabSpec {
  /** Directory name prefix under /dev/shm (or the temp dir). */
  prefix: string;
  /** Extra services of `vault`: name -> script. */
  services?: Record<string, string>;
  /** Extra policy lines (written before the lab's own, so they win). */
  policy?: string;
}

export class BenchLab {
  #status: LabStatus;

  private constructor(
    readonly layout: LabLayout,
    status: LabStatus,
  ) {
    this.#status = status;
  }

  static async up(spec: BenchLabSpec): Promise<BenchLab> {
    const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
    const layout = labLayout(mkdtempSync(join(base, spec.prefix)));
    try {
      for (const [name, script] of Object.entries(spec.services ?? {})) {
        mkdirSync(layout.rpcDir("vault"), { recursive: true });
        writeFileSync(join(layout.rpcDir("vault"), name), script, { mode: 0o755 });
      }
      if (spec.policy) {
        mkdirSync(layout.policyDir, { recursive: true });
        writeFileSync(join(layout.policyDir, "40-bench.policy"), spec.policy);
      }
      return new BenchLab(layout, await labUp(layout, { isolation: "none" }));
    } catch (error) {
      rmSync(layout.dir, { recursive: true, force: true });
      throw error;
    }
  }

  get status(): LabStatus {
    return this.#status;
  }

  /** Reads the status again (pids change when the admin service restarts a process). */
  async refresh(): Promise<LabStatus> {
    this.#status = await labStatus(this.layout);
    return this.#status;
  }

  env(name: string): Record<string, string> {
    const domain = this.#status.domains.find((candidate) => candidate.name === name);
    if (!domain) throw new Error(`the lab has no domain ${name}`);
    return domainEnv(this.layout, domain, this.#status.transport === "socket" ? "socket" : "shm");
  }

  /** `program` as a process of domain `name` finds it on its PATH. */
  which(name: string, program: string): string {
    return Bun.which(program, { PATH: this.env(name).PATH }) ?? program;
  }

  /** The admin service, the policy daemon, and each running domain's agent and daemon. */
  processes(): LabProcess[] {
    const found: LabProcess[] = [{ label: "admin", pid: this.#status.adminPid }];
    if (this.#status.policyPid !== null) {
      found.push({ label: "policy-daemon", pid: this.#status.policyPid });
    }
    for (const domain of this.#status.domains) {
      if (domain.agentPid !== null) {
        found.push({ label: `${domain.name}.agent`, pid: domain.agentPid });
      }
      if (domain.daemonPid !== null) {
        found.push({ label: `${domain.name}.daemon`, pid: domain.daemonPid });
      }
    }
    return found;
  }

  pid(label: string): number {
    const found = this.processes().find((candidate) => candidate.label === label);
    if (!found) throw new Error(`the lab has no process ${label}`);
    return found.pid;
  }

  async down(): Promise<void> {
    // A lab that fails to go down must not hide the bench's own result or error.
    await labDown(this.layout).catch(() => {});
    rmSync(this.layout.dir, { recursive: true, force: true });
  }
}

export interface LabProcess {
  label: string;
  pid: number;
}

export interface ProcessSample extends LabProcess {
  fds: number;
  rssKb: number;
}

/** Open fds of `pid`, or -1 when it is gone. */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

/** Resident memory of `pid` in KiB (VmRSS), or -1 when it is gone. */
export function rssKb(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : -1;
  } catch {
    return -1;
  }
}

export function sample(processes: LabProcess[]): ProcessSample[] {
  return processes.map((entry) => ({ ...entry, fds: fdCount(entry.pid), rssKb: rssKb(entry.pid) }));
}

export function totals(samples: ProcessSample[]): { fds: number; rssKb: number } {
  return {
    fds: samples.reduce((sum, entry) => sum + Math.max(0, entry.fds), 0),
    rssKb: samples.reduce((sum, entry) => sum + Math.max(0, entry.rssKb), 0),
  };
}

/**
 * Waits (at most `ms`) until the processes hold no more fds than in `before`: a pump closes a
 * finished stream's fds a moment after the caller has exited. Returns the last sample.
 */
export async function settledSample(before: ProcessSample[], ms = 3_000): Promise<ProcessSample[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const now = sample(before);
    if (totals(now).fds <= totals(before).fds || Date.now() > deadline) return now;
    await Bun.sleep(50);
  }
}

export interface ProcStat {
  pid: number;
  ppid: number;
  state: string;
  cmdline: string;
}

/** Every live process on the machine (zombies included, marked by state "Z"). */
export function allProcesses(): ProcStat[] {
  const found: ProcStat[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ").trim();
      found.push({ pid: Number(name), state: fields[0]!, ppid: Number(fields[1]), cmdline });
    } catch {
      // Gone between the listing and the read.
    }
  }
  return found;
}

/** Descendants of `root` (children, their children, ...). */
export function descendants(root: number, processes = allProcesses()): ProcStat[] {
  const out: ProcStat[] = [];
  let parents = new Set([root]);
  while (parents.size > 0) {
    const next = processes.filter((entry) => parents.has(entry.ppid));
    out.push(...next);
    parents = new Set(next.map((entry) => entry.pid));
  }
  return out;
}

/** Entries of the lab's vchan directory (rendezvous sockets of vchans not yet connected). */
export function vchanEntries(layout: LabLayout): string[] {
  try {
    return readdirSync(layout.vchanDir).sort();
  } catch {
    return [];
  }
}

export async function waitUntil(check: () => boolean, ms: number, stepMs = 20): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(stepMs);
  }
  return true;
}

/** Mappings of memfd files (vchan shared pages) in a process, or -1 when it is gone. */
export function memfdMappings(pid: number): number {
  try {
    const maps = readFileSync(`/proc/${pid}/maps`, "utf8");
    return maps.split("\n").filter((line) => line.includes("/memfd:")).length;
  } catch {
    return -1;
  }
}

export interface Snapshot {
  samples: ProcessSample[];
  memfds: Map<number, number>;
  vchan: string[];
}

/**
 * The lab at rest, to compare with later: taken once the fd count has held still for 200 ms
 * (at most 3 s), so a call that just ended is not counted in.
 */
export async function snapshot(lab: BenchLab): Promise<Snapshot> {
  const deadline = Date.now() + 3_000;
  let samples = sample(lab.processes());
  for (let still = 0; still < 4 && Date.now() < deadline;) {
    await Bun.sleep(50);
    const next = sample(lab.processes());
    still = totals(next).fds === totals(samples).fds ? still + 1 : 0;
    samples = next;
  }
  const memfds = new Map(samples.map((entry) => [entry.pid, memfdMappings(entry.pid)]));
  return { samples, memfds, vchan: vchanEntries(lab.layout) };
}

/** Waits until the admin service has restarted whatever died (every lab process has a pid). */
export async function labComplete(lab: BenchLab): Promise<boolean> {
  const deadline = Date.now() + SETTLE_MS;
  while (Date.now() < deadline) {
    const status = await lab.refresh().catch(() => null);
    const vms = status?.domains.filter((domain) => domain.id !== 0) ?? [];
    const running = vms.filter((domain) => domain.state === "Running");
    const whole = running.every((domain) => domain.agentPid !== null && domain.daemonPid !== null);
    if (status && status.policyPid !== null && running.length >= 2 && whole) return true;
    await Bun.sleep(50);
  }
  return false;
}

/** What the row left behind: compared with `before`, for the lab processes that survived. */
export async function findLeaks(lab: BenchLab, before: Snapshot): Promise<string[]> {
  const leaks: string[] = [];
  if (!(await labComplete(lab))) leaks.push("the lab did not restart every process in 30 s");
  const pids = new Set(lab.processes().map((entry) => entry.pid));
  const survivors = before.samples.filter((entry) => pids.has(entry.pid));
  for (const entry of await settledSample(survivors)) {
    const was = survivors.find((first) => first.pid === entry.pid)!;
    if (entry.fds > was.fds) leaks.push(`${entry.label}: ${entry.fds - was.fds} more fds`);
    const memfds = memfdMappings(entry.pid) - before.memfds.get(entry.pid)!;
    if (memfds > 0) leaks.push(`${entry.label}: ${memfds} more shared-memory mappings`);
  }
  const processes = allProcesses();
  for (const proc of processes) {
    if (pids.has(proc.pid) || proc.pid === process.pid) continue;
    const ours = proc.cmdline.includes(lab.layout.dir) || pids.has(proc.ppid);
    if (ours) leaks.push(`process ${proc.pid} (${proc.state}) ${proc.cmdline.slice(0, 60)}`);
  }
  const added = vchanEntries(lab.layout).filter((name) => !before.vchan.includes(name));
  if (added.length > 0) leaks.push(`vchan directory: ${added.join(", ")}`);
  return leaks;
}

export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}
