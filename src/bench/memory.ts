// `qrx bench memory`: what a lab costs at rest. The default lab and one with 20 VMs are brought
// up, left idle for a moment, and every process of theirs (admin service, policy daemon, an agent
// and a daemon per running domain) is measured: RSS, and PSS (shared pages split between their
// users, so the PSS sum is what the lab really adds to the machine).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { labDown, labLayout, labUp } from "../lab/control.ts";

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
  const name = (index: number) => `vm${String(index + 1).padStart(2, "0")}`;
  const domain = (index: number) => `[[domain]]\nname = "${name(index)}"\ntype = "AppVM"\n`;
  const domains = Array.from({ length: 20 }, (_, index) => domain(index));
  const file = join(dir, "lab-20.toml");
  const policy = `policy = """\ntest.Echo * @anyvm @anyvm allow\n"""\n`;
  writeFileSync(file, `${policy}\n[dom0]\nservices = []\n\n${domains.join("\n")}`);
  return file;
}

/** Rss and Pss of `pid` in kB (smaps_rollup), or null when it is gone. */
function memoryOf(pid: number): { rss: number; pss: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const field = (name: string) => {
      return Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
    };
    return { rss: field("Rss"), pss: field("Pss") };
  } catch {
    return null;
  }
}

export async function measureLab(name: MemoryRow["name"], config?: string): Promise<MemoryRow> {
  const base = mkdtempSync(join(tmpdir(), "qrx-bench-memory-"));
  const layout = labLayout(join(base, "lab"));
  try {
    const status = await labUp(layout, { config });
    await Bun.sleep(SETTLE_MS);
    const running = status.domains.filter((domain) => domain.state === "Running");
    const perDomain = running.flatMap((domain) => [domain.agentPid, domain.daemonPid]);
    const pids = [status.adminPid, status.policyPid, ...perDomain].filter((pid) => pid !== null);
    const measured = pids.map(memoryOf).filter((entry) => entry !== null);
    const kB = (key: "rss" | "pss") => measured.reduce((total, entry) => total + entry[key], 0);
    const mB = (key: "rss" | "pss") => Math.round(kB(key) / 102.4) / 10;
    const counts = { domains: running.length, processes: measured.length };
    return { name, ...counts, rssMB: mB("rss"), pssMB: mB("pss") };
  } finally {
    // A lab that fails to go down must not hide the bench's own result or error.
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
  const pad = (cell: string, i: number) => (i === 0 ? cell.padEnd(20) : cell.padStart(10));
  const line = (cells: string[]) => cells.map(pad).join(" ");
  console.log(line(["lab", "domains", "processes", "RSS MB", "PSS MB"]));
  for (const row of rows) {
    const counts = [String(row.domains), String(row.processes)];
    const figures = [...counts, row.rssMB.toFixed(1), row.pssMB.toFixed(1)];
    console.log(line([row.name, ...figures]));
  }
  console.log("every process of the lab (admin service, policy daemon, an agent and a daemon");
  console.log("per VM), after 2 s idle");
}
