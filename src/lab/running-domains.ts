// What `qrx run` needs of a running lab, without a call to its admin service: the admin writes
// D/running.json each time a domain starts or stops, and `qrx run` trusts a record only when the
// admin and the domain's agent it names are both still those processes (pid and start time, from
// /proc). Anything else (no file, a dead or restarted process, a domain not listed) is the admin's
// to answer, with its own errors. The status call costs ~3 ms of each `qrx run`, most of it Bun
// setting up its event loop on the first socket.
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DomainStatus, LabStatus } from "./admin.ts";
import type { LabLayout } from "./layout.ts";

/** The part of a domain's status `qrx run` uses. */
export type RunnableDomain = Pick<DomainStatus, "name" | "id" | "state" | "agentPid" | "isolation">;

/** The part of the lab's status `qrx run` uses. */
export interface RunnableLab {
  transport: LabStatus["transport"];
  domains: RunnableDomain[];
}

interface RunningFile extends RunnableLab {
  adminPid: number;
  adminStart: string;
  domains: (RunnableDomain & { agentStart: string })[];
}

function runningFile(layout: LabLayout): string {
  return join(layout.dir, "running.json");
}

/** When `pid` started (stat's 22nd field, in clock ticks since boot); null once it is gone. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the command (which may hold spaces and parentheses), the fields from the 3rd on.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/** Written by the admin service (`status` is its own) after a domain starts or stops. */
export function writeRunning(layout: LabLayout, status: LabStatus): void {
  const domains = status.domains.flatMap((domain) => {
    const agentStart = domain.agentPid === null ? null : startTime(domain.agentPid);
    if (domain.state !== "Running" || agentStart === null) return [];
    const { name, id, state, agentPid, isolation } = domain;
    return [{ name, id, state, agentPid, isolation, agentStart }];
  });
  const file: RunningFile = {
    adminPid: status.adminPid,
    adminStart: startTime(status.adminPid) ?? "",
    transport: status.transport,
    domains,
  };
  const path = runningFile(layout);
  writeFileSync(`${path}.new`, JSON.stringify(file));
  renameSync(`${path}.new`, path);
}

/** The lab as running.json has it when `domain` is listed and both processes are still the
 * ones it names; else null. */
export function knownRunning(layout: LabLayout, domain: string): RunnableLab | null {
  let file: RunningFile;
  try {
    file = JSON.parse(readFileSync(runningFile(layout), "utf8")) as RunningFile;
  } catch {
    return null;
  }
  const record = file.domains.find((candidate) => candidate.name === domain);
  if (record?.agentPid == null || startTime(record.agentPid) !== record.agentStart) return null;
  if (startTime(file.adminPid) !== file.adminStart) return null;
  return file;
}
