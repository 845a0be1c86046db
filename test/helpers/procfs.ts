// What /proc says about our processes, for tests that look for leaks after calls: open fds,
// shared-memory fds and mappings, zombie children, listening unix sockets.

import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** The targets of a process's open fds (`socket:[…]`, `/memfd:…`, paths); [] if it is gone. */
export function fdTargets(pid: number): string[] {
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const targets: string[] = [];
  for (const name of names) {
    try {
      targets.push(readlinkSync(`/proc/${pid}/fd/${name}`));
    } catch {
      // Closed between the listing and the readlink.
    }
  }
  return targets;
}

/** Mappings of memfd files (a vchan's shared pages) in a process's address space. */
export function memfdMappings(pid: number): number {
  try {
    return readFileSync(`/proc/${pid}/maps`, "utf8")
      .split("\n")
      .filter((line) => line.includes("/memfd:")).length;
  } catch {
    return 0;
  }
}

/** Bytes of each memfd a process maps, by inode (a vchan's mapping may be split by mprotect). */
export function memfdBytes(pid: number): Map<string, number> {
  const sizes = new Map<string, number>();
  for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
    if (!line.includes("/memfd:")) continue;
    // start-end perms offset dev inode path
    const [range, , , , inode] = line.split(/\s+/);
    const [start, end] = range!.split("-").map((hex) => Number.parseInt(hex, 16));
    sizes.set(inode!, (sizes.get(inode!) ?? 0) + end! - start!);
  }
  return sizes;
}

export interface ProcStat {
  pid: number;
  state: string;
  ppid: number;
  comm: string;
}

/** `/proc/<pid>/stat`'s first fields, or null when the process is gone. */
export function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // comm may hold spaces and ')': the fields after it start at the last ')'.
  const close = text.lastIndexOf(")");
  const [state, ppid] = text.slice(close + 2).split(" ");
  return { pid, state: state!, ppid: Number(ppid), comm: text.slice(text.indexOf("(") + 1, close) };
}

/** Whether the process still runs (a zombie has ended: only its parent has yet to reap it). */
export function isRunning(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== null && stat.state !== "Z" && stat.state !== "X";
}

/** Every process whose parent is one of `parents`. */
export function childrenOf(parents: number[]): ProcStat[] {
  const wanted = new Set(parents);
  const children: ProcStat[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = procStat(Number(name));
    if (stat && wanted.has(stat.ppid)) children.push(stat);
  }
  return children;
}

/** Bytes a process has read so far (rchar in /proc/<pid>/io), or -1 when it is gone. */
export function bytesRead(pid: number): number {
  try {
    const match = /^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
    return match ? Number(match[1]) : -1;
  } catch {
    return -1;
  }
}

/** Paths of listening unix sockets (from /proc/net/unix) under `dir`. */
export function listeningSocketsIn(dir: string): string[] {
  const SO_ACCEPTCON = 0x10000;
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const paths: string[] = [];
  for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
    // Num RefCount Protocol Flags Type St Inode [Path]
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8) continue;
    const flags = Number.parseInt(fields[3]!, 16);
    const path = fields.slice(7).join(" ");
    if (flags & SO_ACCEPTCON && path.startsWith(prefix)) paths.push(path);
  }
  return paths;
}
