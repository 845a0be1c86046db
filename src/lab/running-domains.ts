// What `qrx run` needs of a running lab, without a call to its admin service: the admin writes
// D/running.json each time a domain starts or stops, and `qrx run` trusts a record only when the
// admin and the domain's processes it names are all still those processes (pid and start time,
// from /proc). Anything else (no file, a dead or restarted process, a domain not listed) is the
// admin's to answer, with its own errors. The status call costs ~3 ms of each `qrx run`, most of
// it Bun setting up its event loop on the first socket; the reads here go through Bun.file, since
// node:fs would cost as much again before the command starts.
import { join } from "../posix-path.ts";
import type { DomainStatus, LabStatus } from "./admin.ts";
import type { DomainProcesses } from "./enter.ts";
import type { LabLayout } from "./layout.ts";

/** The part of a domain's status `qrx run` uses; `enter`: an isolated domain's processes. */
export type RunnableDomain = Pick<
  DomainStatus,
  "name" | "id" | "state" | "agentPid" | "isolation"
> & { enter?: DomainProcesses };

/** The part of the lab's status `qrx run` uses. */
export interface RunnableLab {
  transport: LabStatus["transport"];
  domains: RunnableDomain[];
}

/** [pid, start time]: a process that must still be the same one. */
type Alive = [number, string];

interface RunningFile extends RunnableLab {
  admin: Alive;
  domains: (RunnableDomain & { alive: Alive[] })[];
}

function runningFile(layout: LabLayout): string {
  return join(layout.dir, "running.json");
}

/** stat's 22nd field: when the process started, in clock ticks since boot. */
function startOf(stat: string): string | null {
  // After the command (which may hold spaces and parentheses), the fields from the 3rd on.
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
}

/**
 * Written by the admin service (`status` is its own) after a domain starts or stops;
 * `processesOf` finds an isolated domain's processes from its agent's pid.
 */
export function writeRunning(
  layout: LabLayout,
  status: LabStatus,
  processesOf: (agentPid: number) => DomainProcesses | null,
): void {
  const { readFileSync, renameSync, writeFileSync } =
    require("node:fs") as typeof import("node:fs");
  const alive = (pid: number): Alive | null => {
    try {
      const start = startOf(readFileSync(`/proc/${pid}/stat`, "utf8"));
      return start === null ? null : [pid, start];
    } catch {
      return null;
    }
  };
  const domains = status.domains.flatMap((domain) => {
    const { name, id, state, agentPid, isolation } = domain;
    if (state !== "Running" || agentPid === null) return [];
    const enter = isolation === "namespaces" ? processesOf(agentPid) : undefined;
    if (enter === null) return [];
    const pids = enter ? [agentPid, enter.init, enter.program] : [agentPid];
    const processes = pids.map(alive);
    if (processes.some((process) => process === null)) return [];
    return [{ name, id, state, agentPid, isolation, enter, alive: processes as Alive[] }];
  });
  const admin = alive(status.adminPid);
  if (admin === null) return;
  const file: RunningFile = { admin, transport: status.transport, domains };
  const path = runningFile(layout);
  writeFileSync(`${path}.new`, JSON.stringify(file));
  renameSync(`${path}.new`, path);
}

async function stillAlive([pid, start]: Alive): Promise<boolean> {
  try {
    return startOf(await Bun.file(`/proc/${pid}/stat`).text()) === start;
  } catch {
    return false;
  }
}

/** The lab as running.json has it when `domain` is listed and every process it names for it and
 * the admin is still that one; else null. */
export async function knownRunning(layout: LabLayout, domain: string): Promise<RunnableLab | null> {
  try {
    const file = JSON.parse(await Bun.file(runningFile(layout)).text()) as RunningFile;
    const record = file.domains.find((candidate) => candidate.name === domain);
    if (record === undefined) return null;
    const checks = await Promise.all([file.admin, ...record.alive].map(stillAlive));
    return checks.every(Boolean) ? file : null;
  } catch {
    // No file, or not one the admin wrote.
    return null;
  }
}
