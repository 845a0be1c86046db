// `qrx bench dispvm`: how long a DisposableVM takes, in a real lab (the default one, brought up in
// a temporary directory). Sequentially, `samples` times each:
//
// - create: admin.vm.CreateDisposable on default-dvm (registry entry, id, dirs cloned), as the
//   daemon asks for it; the target is <= 200 ms.
// - start: admin.vm.Start of that DispVM until its daemon listens (two Bun processes start and
//   handshake over the control vchan).
// - kill: admin.vm.Kill, which also destroys it (processes stopped, dirs removed, id freed).
// - call:$dispvm: `qrexec-client-vm '$dispvm' test.Add` end to end, DispVM included.
// - baseline:call-running-vm: the same call to vault, which is already running.
//
// Rows: {name, medianMs, p90Ms, samples}.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { qubesdCallText } from "../admin/qubesd.ts";
import { labDown, labLayout, labUp } from "../lab/control.ts";
import { domainEnv } from "../lab/environment.ts";

export interface DispvmBenchRow {
  name: "create" | "start" | "kill" | "call:$dispvm" | "baseline:call-running-vm";
  medianMs: number;
  p90Ms: number;
  samples: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function row(name: DispvmBenchRow["name"], times: number[]): DispvmBenchRow {
  const sorted = [...times].sort((a, b) => a - b);
  const round = (value: number) => Math.round(value * 100) / 100;
  return {
    name,
    medianMs: round(quantile(sorted, 0.5)),
    p90Ms: round(quantile(sorted, 0.9)),
    samples: times.length,
  };
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

export async function runDispvmBench(options: {
  samples: number;
  progress: boolean;
}): Promise<DispvmBenchRow[]> {
  const layout = labLayout(mkdtempSync(join(tmpdir(), "qrx-bench-dispvm-")));
  const note = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  try {
    const status = await labUp(layout, { isolation: "none" });
    const admin = (method: string, dest: string, payload?: string) =>
      qubesdCallText(layout.adminSocket, method, dest, { payload });
    const create: number[] = [];
    const start: number[] = [];
    const kill: number[] = [];
    note(`bench dispvm: ${options.samples} x create/start/kill of a DisposableVM of default-dvm`);
    for (let sample = 0; sample < options.samples; sample++) {
      let name = "";
      create.push(
        await timed(
          async () => (name = await admin("admin.vm.CreateDisposable", "default-dvm", "uuid")),
        ),
      );
      start.push(await timed(() => admin("admin.vm.Start", name)));
      kill.push(await timed(() => admin("admin.vm.Kill", name)));
    }
    const work = status.domains.find((domain) => domain.name === "work")!;
    const env = domainEnv(layout, work, status.transport === "socket" ? "socket" : "shm");
    const call = async (target: string) => {
      const child = Bun.spawn(["qrexec-client-vm", target, "test.Add"], {
        env,
        stdin: new TextEncoder().encode("1 2\n"),
        stdout: "pipe",
        stderr: "inherit",
      });
      const [out, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
      if (code !== 0 || out !== "3\n")
        throw new Error(
          `qrexec-client-vm ${target} test.Add gave ${JSON.stringify(out)}, exit ${code}`,
        );
    };
    note(`bench dispvm: ${options.samples} x test.Add to $dispvm and to vault (running)`);
    const dispvmCalls: number[] = [];
    const runningCalls: number[] = [];
    for (let sample = 0; sample < options.samples; sample++) {
      dispvmCalls.push(await timed(() => call("$dispvm")));
      runningCalls.push(await timed(() => call("vault")));
    }
    return [
      row("create", create),
      row("start", start),
      row("kill", kill),
      row("call:$dispvm", dispvmCalls),
      row("baseline:call-running-vm", runningCalls),
    ];
  } finally {
    // A lab that fails to go down must not hide the bench's own result or error.
    await labDown(layout).catch(() => {});
    rmSync(layout.dir, { recursive: true, force: true });
  }
}

export function printDispvmBench(rows: DispvmBenchRow[]): void {
  console.log("DisposableVMs in the default lab (milliseconds)");
  console.log(
    `${"row".padEnd(26)} ${"median".padStart(8)} ${"p90".padStart(8)} ${"samples".padStart(8)}`,
  );
  for (const entry of rows) {
    console.log(
      `${entry.name.padEnd(26)} ${entry.medianMs.toFixed(1).padStart(8)} ` +
        `${entry.p90Ms.toFixed(1).padStart(8)} ${String(entry.samples).padStart(8)}`,
    );
  }
}
