// Issue 16 item 1: a vchan peer that hands over a wake-up fd that blocks its writer (a blocking
// eventfd at its maximum count, a full pipe) must not freeze the victim's pump thread. The
// hostile peer is test/fixtures/hostile-shm-peer.py; the victims are our real agent and daemon.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BIN, QrexecSystem, waitFor } from "./helpers/system.ts";

const HOSTILE = join(import.meta.dir, "fixtures", "hostile-shm-peer.py");
const POLICY_PROGRAM = join(import.meta.dir, "fixtures", "policy-exec");
type Kind = "eventfd-max" | "full-pipe" | "eventfd-only";

let system: QrexecSystem;
let spawned: Subprocess[] = [];

afterEach(async () => {
  for (const child of spawned) child.kill("SIGKILL");
  await Promise.all(spawned.map((child) => child.exited));
  spawned = [];
  await system.stop();
});

/** The hostile peer, with its progress lines collected as they come. */
function hostile(role: "server" | "client", path: string, kind: Kind) {
  const child = Bun.spawn(["python3", HOSTILE, role, path, kind], { stdout: "pipe" });
  spawned.push(child);
  const lines: string[] = [];
  void (async () => {
    for await (const chunk of child.stdout) {
      lines.push(...new TextDecoder().decode(chunk).split("\n").filter(Boolean));
    }
  })();
  return { child, lines };
}

/** Resolves with the exit code, or null if `child` is still running after `ms`. */
async function exitWithin(child: Subprocess, ms: number): Promise<number | null> {
  const timeout = Bun.sleep(ms).then(() => null);
  return Promise.race([child.exited, timeout]);
}

describe("a peer's wake-up fd cannot block the victim", () => {
  const reasons: Record<Kind, RegExp> = {
    "eventfd-max": /sent 2 fds with its accept; protocol version 2 sends exactly one/,
    "full-pipe": /sent 2 fds with its accept; protocol version 2 sends exactly one/,
    "eventfd-only": /vchan shared memory is not a memfd/,
  };
  for (const kind of Object.keys(reasons) as Kind[]) {
    test(`the daemon's handshake with an agent handing over ${kind} fails with why`, async () => {
      system = new QrexecSystem();
      const peer = hostile("server", join(system.vchanDir, "shmvchan.5.0.512.sock"), kind);
      await waitFor(() => peer.lines.includes("listening"), "the hostile agent to listen");
      const argv = [
        join(BIN, "qrexec-daemon"),
        "--direct",
        `--socket-dir=${system.socketDir}`,
        `--policy-program=${POLICY_PROGRAM}`,
        "--policy-socket=",
        "5",
        "hostile",
      ];
      const env = system.env(0, { QREXEC_STARTUP_TIMEOUT: "5" });
      const daemon = Bun.spawn(argv, { env, stdio: ["ignore", "ignore", "pipe"] });
      spawned.push(daemon);
      const stderr = new Response(daemon.stderr).text();
      // Before the fix its pump thread blocked in the connect kick, past its own startup timeout.
      const code = await exitWithin(daemon, 15_000);
      expect(code, "the daemon hung").not.toBeNull();
      expect(code).not.toBe(0);
      expect(await stderr).toMatch(reasons[kind]);
      expect(existsSync(join(system.socketDir, "qrexec.hostile"))).toBe(false);
    }, 30_000);
  }

  for (const kind of ["eventfd-max", "full-pipe"] as Kind[]) {
    test(`an agent offered ${kind} by a hostile daemon refuses it; its call goes on`, async () => {
      system = new QrexecSystem();
      await system.startVm(2, "work");
      await system.startVm(3, "vault");
      system.service("vault", "test.Echo", "exec cat");
      system.policy("* work vault allow");
      const call = system.spawnClientVm("work", ["vault", "test.Echo"]);
      spawned.push(call);
      const reader = call.stdout.getReader();
      let output = "";
      const readUntil = async (text: string) => {
        while (!output.includes(text)) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`the call ended before "${text}": ${output}\n${system.logs()}`);
          output += new TextDecoder().decode(value);
        }
      };
      call.stdin.write("one\n");
      call.stdin.flush();
      await readUntil("one\n");
      // vault's agent offers its control vchan again once its daemon is gone: the attacker
      // takes that chance, while the call above runs in the same agent's pump thread.
      const vault = system.vms.get("vault")!;
      vault.daemon.kill("SIGKILL");
      await vault.daemon.exited;
      const controlPath = join(system.vchanDir, "shmvchan.3.0.512.sock");
      await waitFor(() => existsSync(controlPath), "vault's agent to offer its control vchan");
      const peer = hostile("client", controlPath, kind);
      const settled = (line: string) => /^accepted|^refused every version$/.test(line);
      await waitFor(() => peer.lines.some(settled), "the hostile daemon's handshake");
      call.stdin.write("two\n");
      call.stdin.flush();
      const echoed = await Promise.race([
        readUntil("two\n").then(() => true),
        Bun.sleep(10_000).then(() => false),
      ]);
      expect(echoed, `the running call froze\n${system.logs()}`).toBe(true);
      expect(peer.lines).toContain("refused every version");
      // And the agent still takes its real daemon, and new calls.
      await system.restartDaemon("vault");
      const fresh = await system.clientVm("work", ["vault", "test.Echo"], "three\n");
      expect(fresh.stdout, system.logs()).toBe("three\n");
      call.stdin.end();
      expect(await call.exited).toBe(0);
    }, 60_000);
  }
});
