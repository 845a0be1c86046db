// `npm run demo` until the lab exists: real processes talking over shared-memory vchans, shown
// as a user would want to see it. Exits non-zero if anything it shows went wrong.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeerProcess } from "../tools/peer-process.ts";
import type { PeerTask } from "../tools/vchan-peer.ts";

interface Step {
  what: string;
  ok: boolean;
  detail: string;
}

function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(2)} ${units[unit]}`;
}

export async function runVchanDemo(options: { bytes: number }): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "qrx-demo-"));
  const steps: Step[] = [];
  const peers: PeerProcess[] = [];
  const start = (task: Omit<PeerTask, "dir">) => {
    const peer = new PeerProcess({ ...task, dir });
    peers.push(peer);
    return peer;
  };
  const say = (line: string) => console.log(line);

  try {
    say("qrx demo: domains are processes here, and a vchan is a shared-memory ring between two of them.");
    say("(The multi-domain lab with qrexec calls and file copy comes with the next milestones.)\n");

    say("1. Domain 0 serves 50 vchans at once; domain 2 connects to all of them and each echoes a message.");
    const echo = start({ role: "server", mode: "echo-many", localDomain: 0, remoteDomain: 2, port: 512, ringBytes: 1024, count: 50 });
    await echo.waitFor("listening");
    const caller = start({ role: "client", mode: "call-many", localDomain: 2, remoteDomain: 0, port: 512, ringBytes: 1024, count: 50 });
    const called = await caller.result();
    await echo.result();
    const echoOk = called.event === "done" && called.verified === 50;
    steps.push({ what: "50 vchans open at once", ok: echoOk, detail: `${called.verified ?? 0}/50 echoes correct` });
    say(`   ${echoOk ? "ok" : "FAILED"}: ${called.verified ?? 0} of 50 echoes came back intact\n`);

    let port = 600;
    let stepNumber = 2;
    for (const [ringBytes, label] of [
      [65536, "qrexec's default 64 KiB ring"],
      [1024, "a MirageOS-sized 1 KiB ring"],
    ] as const) {
      say(`${stepNumber++}. ${formatBytes(options.bytes)} from domain 3 to domain 0 through ${label}, hashed at both ends.`);
      const receiver = start({ role: "server", mode: "recv", localDomain: 0, remoteDomain: 3, port, ringBytes, bytes: options.bytes });
      await receiver.waitFor("listening");
      const sender = start({ role: "client", mode: "send", localDomain: 3, remoteDomain: 0, port: port++, ringBytes, bytes: options.bytes });
      const [received, sent] = await Promise.all([receiver.result(), sender.result()]);
      const ok = received.event === "done" && received.hash === sent.hash;
      const seconds = Number(received.seconds ?? 0);
      const rate = seconds > 0 ? `${(options.bytes / 1e6 / seconds).toFixed(0)} MB/s` : "-";
      steps.push({ what: `${formatBytes(options.bytes)}, ${formatBytes(ringBytes)} ring`, ok, detail: `${seconds.toFixed(2)} s, ${rate}` });
      say(`   ${ok ? "ok" : "FAILED"}: ${formatBytes(options.bytes)} in ${seconds.toFixed(2)} s (${rate}), checksums ${ok ? "equal" : "DIFFER"}\n`);
    }

    say("4. The sender is killed with SIGKILL mid-transfer; the receiver must notice at once.");
    const receiver = start({ role: "server", mode: "recv", localDomain: 0, remoteDomain: 4, port, ringBytes: 65536, bytes: 2 ** 40 });
    await receiver.waitFor("listening");
    const sender = start({ role: "client", mode: "send", localDomain: 4, remoteDomain: 0, port, ringBytes: 65536, bytes: 2 ** 40 });
    await receiver.waitFor("progress");
    const killedAt = performance.now();
    sender.kill("SIGKILL");
    const outcome = await receiver.result(5_000);
    const noticedMs = performance.now() - killedAt;
    const deathOk = outcome.event === "error" && outcome.code === "EPIPE" && noticedMs < 1000;
    steps.push({ what: "peer killed mid-transfer", ok: deathOk, detail: `seen after ${noticedMs.toFixed(0)} ms: ${outcome.reason}` });
    say(`   ${deathOk ? "ok" : "FAILED"}: receiver saw "${outcome.reason}" after ${noticedMs.toFixed(0)} ms\n`);

    const leftover = readdirSync(dir);
    steps.push({ what: "nothing left behind", ok: leftover.length === 0, detail: leftover.length ? leftover.join(", ") : "no sockets, no shared memory" });

    say("Summary");
    const width = Math.max(...steps.map((s) => s.what.length));
    for (const step of steps) say(`  ${step.ok ? "ok    " : "FAILED"}  ${step.what.padEnd(width)}  ${step.detail}`);
    const failed = steps.filter((s) => !s.ok).length;
    say(failed ? `\n${failed} step(s) failed.` : "\nAll steps passed.");
    return failed ? 1 : 0;
  } finally {
    for (const peer of peers) peer.kill();
    await Promise.all(peers.map((peer) => peer.exited));
    rmSync(dir, { recursive: true, force: true });
  }
}
