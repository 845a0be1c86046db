// `qrx bench memory`: what a lab costs at rest. The default lab and one with 20 VMs are brought
// up, left idle for a moment, and every process of theirs (admin service, policy daemon, an agent
// and a daemon per running domain) is measured: RSS, and PSS (shared pages split between their
// users, so the PSS sum is what the lab really adds to the machine).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { labDown, labLayout, labUp } from "../src/lab/control.ts";

export interface MemoryRow {
  name: "memory-default-lab" | "memory-lab-20";
  /** Running domains, dom0 included. */
  domains: number;
  processes: number;
  rssMB: number;
  pssMB: number;
}

/** Long enough for start-up garbage to be collected or at least settle. */
const SETTLE_MS = 2000;

export function twentyDomainConfig(dir: string): string {
  const domains = Array.from({ length: 20 }, (_, index) => `[[domain]]\nname = "vm${String(index + 1).padStart(2, "0")}"\ntype = "AppVM"\n`);
  const file = join(dir, "lab-20.toml");
  writeFileSync(file, `policy = """\ntest.Echo * @anyvm @anyvm allow\n"""\n\n[dom0]\nservices = []\n\n${domains.join("\n")}`);
  return file;
}

/** Rss and Pss of `pid` in kB (smaps_rollup), or null when it is gone. */
function memoryOf(pid: number): { rss: number; pss: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
    return { rss: field("Rss"), pss: field("Pss") };
  } catch {
    return null;
  }
}

export async function measureLab(name: MemoryRow["name"], config: string | undefined): Promise<MemoryRow> {
  const base = mkdtempSync(join(tmpdir(), "qrx-bench-memory-"));
  const layout = labLayout(join(base, "lab"));
  try {
    const status = await labUp(layout, { config });
    await Bun.sleep(SETTLE_MS);
    const running = status.domains.filter((domain) => domain.state === "Running");
    const pids = [status.adminPid, status.policyPid, ...running.flatMap((domain) => [domain.agentPid, domain.daemonPid])];
    const measured = pids.filter((pid): pid is number => pid !== null).map(memoryOf).filter((entry) => entry !== null);
    const sum = (key: "rss" | "pss") => Math.round(measured.reduce((total, entry) => total + entry[key], 0) / 102.4) / 10;
    return { name, domains: running.length, processes: measured.length, rssMB: sum("rss"), pssMB: sum("pss") };
  } finally {
    await labDown(layout).catch(() => {});
    rmSync(base, { recursive: true, force: true });
  }
}

export async function runMemoryBench(options: { progress: boolean }): Promise<MemoryRow[]> {
  const say = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  say("bench memory: the default lab, idle");
  const rows = [await measureLab("memory-default-lab", undefined)];
  const dir = mkdtempSync(join(tmpdir(), "qrx-bench-memory-config-"));
  try {
    say("bench memory: a lab of 20 VMs, idle");
    rows.push(await measureLab("memory-lab-20", twentyDomainConfig(dir)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export function printMemoryBench(rows: MemoryRow[]): void {
  console.log(`${"lab".padEnd(20)} ${"domains".padStart(8)} ${"processes".padStart(10)} ${"RSS MB".padStart(8)} ${"PSS MB".padStart(8)}`);
  for (const row of rows) {
    console.log(`${row.name.padEnd(20)} ${String(row.domains).padStart(8)} ${String(row.processes).padStart(10)} ${row.rssMB.toFixed(1).padStart(8)} ${row.pssMB.toFixed(1).padStart(8)}`);
  }
  console.log("every process of the lab (admin service, policy daemon, an agent and a daemon per VM), after 2 s idle");
}
