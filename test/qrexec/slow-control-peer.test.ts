// A dom0 side that never reads its control vchan (issue 16 item 7): the agent keeps queueing
// triggers toward it, but what may wait for the peer is capped (zig/pump/control.zig): at the
// limit the agent drops the channel as a slow peer, refuses the callers whose triggers went to
// it, keeps the others for the next daemon, and its memory stays bounded; it offers the control
// vchan again, and a real daemon that connects answers everyone left.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { vchanPath } from "../../src/conformance/wire.ts";
import { encodeTrigger4, frame } from "../../src/protocol/codec.ts";
import { MSG_TRIGGER_SERVICE4 } from "../../src/protocol/constants.ts";
import { Connection } from "../../src/io/connection.ts";
import { QrexecSystem, waitFor, type Vm } from "../helpers/system.ts";

const system = new QrexecSystem("socket");
afterAll(async () => {
  // Started by hand below: an agent whose daemon came only at the end, if at all.
  const vm = system.vms.get("work");
  if (vm && !vm.daemon) {
    vm.agent?.kill("SIGKILL");
    system.vms.delete("work");
  }
  await system.stop();
});

/** Connects as dom0 to the agent's control vchan, says HELLO and then never reads. */
const SILENT_DOM0 = `
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
for _ in range(500):
    try:
        s.connect(sys.argv[1]); break
    except OSError:
        time.sleep(0.01)
s.sendall(struct.pack("<III", 0x300, 4, 4))
print("connected", flush=True)
time.sleep(600)
`;

async function connectPatiently(path: string): Promise<Connection> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await Connection.connect(path);
    } catch (error) {
      if (attempt === 100) throw error;
      await Bun.sleep(10);
    }
  }
}

function rssKb(pid: number): number {
  const lines = readFileSync(`/proc/${pid}/status`, "utf8").split("\n");
  const line = lines.find((text) => text.startsWith("VmRSS:"))!;
  return Number(/\d+/.exec(line)![0]);
}

function trigger(index: number): Uint8Array {
  const text = new TextEncoder();
  const field = (value: string, bytes: number) => {
    const out = new Uint8Array(bytes);
    out.set(text.encode(value));
    return out;
  };
  // About 3.9 KiB each: a 4 KiB control ring takes one at a time.
  const service = text.encode(`test.Slow+${String(index).padStart(5, "0")}${"a".repeat(3860)}`);
  const [source, target, ident] = [field("", 64), field("vault", 64), field("", 32)];
  const fields = { source, target, ident, service };
  return frame(MSG_TRIGGER_SERVICE4, encodeTrigger4(fields));
}

test("an agent drops a daemon that never reads as a slow peer and serves on", async () => {
  const rpcDir = join(system.dir.path, "work-rpc");
  mkdirSync(rpcDir, { recursive: true });
  const agentSocket = join(system.socketDir, "agent-work");
  const known = { id: 2, name: "work", rpcDir, agentSocket, agentArgs: [], agentEnv: {} };
  // Only the agent: the daemon comes at the end.
  const vm = known as unknown as Vm;
  system.vms.set("work", vm);
  vm.agent = system.startAgent(vm);
  await waitFor(() => existsSync(vm.agentSocket), "the agent's trigger socket");
  const control = vchanPath(system.vchanDir, 2, 0, 512);
  const stdio = { stdout: "pipe", stderr: "inherit" } as const;
  const dom0 = Bun.spawn(["python3", "-c", SILENT_DOM0, control], stdio);
  try {
    const reader = dom0.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toStartWith("connected");
    const agentLog = () => system.logOfProcess(vm.agent);
    await waitFor(() => agentLog().includes("dom0 connected"), "the agent to take the silent dom0");
    const rssBefore = rssKb(vm.agent.pid);

    // Twice what may wait (~1 MiB) plus what the transport takes: 500 triggers of ~3.9 KiB.
    const callers: Connection[] = [];
    // In batches: the trigger socket's backlog is short.
    while (callers.length < 500) {
      const connect = () => connectPatiently(vm.agentSocket);
      const batch = await Promise.all(Array.from({ length: 20 }, connect));
      for (const caller of batch) caller.write(trigger(callers.push(caller)));
    }
    const answers = callers.map((caller) => caller.read(8).catch(() => null));
    const lost = (line: string) => line.includes("control vchan to dom0 lost");
    const lostLines = () => agentLog().split("\n").filter(lost);
    await waitFor(() => lostLines().length > 0, "the agent to drop the silent dom0", 20_000);
    expect(lostLines()).toHaveLength(1);
    const reason = /slow peer: \d+ bytes of control messages left unread \(limit \d+\)/;
    expect(lostLines()[0]).toMatch(reason);
    // The 2 MiB were never all held: what waits is capped near 1 MiB (RSS moves in steps; the
    // slack is for Bun's own allocations under 500 connections).
    expect(rssKb(vm.agent.pid) - rssBefore).toBeLessThan(16 * 1024);

    // Offered again: a real daemon connects, and answers every caller still waiting (the
    // policy knows no such service: refused). Callers whose trigger went to the silent dom0
    // were refused when it was dropped. None is left hanging.
    dom0.kill("SIGKILL");
    vm.daemon = system.startDaemon(vm);
    const daemonLog = () => system.logOfProcess(vm.daemon);
    const connected = () => daemonLog().includes("connected to the agent");
    await waitFor(connected, "a real daemon to connect", 20_000);
    const deadline = Bun.sleep(40_000).then(() => "still waiting" as const);
    const settled = await Promise.race([Promise.all(answers), deadline]);
    const waiting = settled === "still waiting";
    const answered = waiting ? settled : settled.filter((answer) => answer !== null);
    expect(answered).toEqual([]);
    expect(vm.agent.exitCode).toBeNull();
  } finally {
    dom0.kill("SIGKILL");
  }
}, 60_000);
