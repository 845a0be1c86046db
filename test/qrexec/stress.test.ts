// Robustness of the real programs (bin/) under load and failure, on both vchan transports: big
// transfers checksummed at both ends, 100 calls at once through one agent, peers killed with
// SIGKILL mid-call (service, caller, the whole agent), agent and daemon restarts, SIGUSR1
// single-socket mode, and after all that no zombies, leaked fds or shared memory, or stale vchan
// rendezvous sockets.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BIN, QrexecSystem, waitFor, type Transport } from "../helpers/system.ts";
import {
  bytesRead,
  childrenOf,
  fdTargets,
  isRunning,
  listeningSocketsIn,
  memfdMappings,
} from "../helpers/procfs.ts";

const TRANSPORTS: Transport[] = ["shm", "socket"];
const MiB = 1 << 20;
const GiB = 1 << 30;

/** A cheap deterministic non-periodic byte stream: the AES-128-CTR keystream of a fixed key. */
const GENERATOR =
  "openssl enc -aes-128-ctr -nosalt -K " +
  "000102030405060708090a0b0c0d0e0f -iv 0 -in /dev/zero 2>/dev/null";
/**
 * sha256 of stdin, as `<hex> *stdin` (openssl's uses the CPU's SHA extensions; sha256sum may not).
 */
const SHA256 = "openssl dgst -sha256 -r";

const referenceSums = new Map<number, string>();

/** The sha256 of the generator's first `bytes` bytes, computed without qrexec. */
async function referenceSum(bytes: number): Promise<string> {
  const known = referenceSums.get(bytes);
  if (known) return known;
  const child = Bun.spawn(["sh", "-c", `${GENERATOR} | head -c ${bytes} | ${SHA256}`], {
    stdout: "pipe",
  });
  const sum = hexSum(await new Response(child.stdout).text());
  expect(await child.exited).toBe(0);
  referenceSums.set(bytes, sum);
  return sum;
}

function hexSum(output: string): string {
  const match = /^([0-9a-f]{64}) \*stdin$/m.exec(output);
  if (!match) throw new Error(`no sha256 in ${JSON.stringify(output)}`);
  return match[1]!;
}

/**
 * Reads a child's stdout incrementally: `until(text)` waits for text to appear, `rest()` to EOF.
 */
class OutputReader {
  #text = "";
  #done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder();
    this.#done = (async () => {
      for await (const chunk of stream) this.#text += decoder.decode(chunk, { stream: true });
    })();
  }

  get text(): string {
    return this.#text;
  }

  async until(wanted: string, timeoutMs = 20_000): Promise<void> {
    await waitFor(
      () => this.#text.includes(wanted),
      `${JSON.stringify(wanted)} in the output (so far ${JSON.stringify(this.#text)})`,
      timeoutMs,
    );
  }

  async rest(): Promise<string> {
    await this.#done;
    return this.#text;
  }
}

/** The exit code, or null after `timeoutMs` (the child is then killed). */
async function exitWithin(child: Subprocess, timeoutMs: number): Promise<number | null> {
  const timer = Bun.sleep(timeoutMs).then(() => null);
  const code = await Promise.race([child.exited, timer]);
  if (code === null) {
    child.kill("SIGKILL");
    await child.exited;
  }
  return code;
}

interface ProcessResources {
  role: string;
  pid: number;
  fds: number;
  memfds: number;
  memfdMaps: number;
}

interface Resources {
  processes: ProcessResources[];
  /** Rendezvous files in the vchan directory (shm: every file; the socket backend keeps its). */
  vchanFiles: string[];
  listening: string[];
}

/** Slack for fds the runtime opens lazily; a leak of one per call over a batch exceeds it. */
const FD_SLACK = 3;

describe.each(TRANSPORTS)("robustness over %s", (transport) => {
  let system: QrexecSystem;
  /** The transfer size: 1 GiB on shm; the socket transport (a plain stream socket) gets 64 MiB. */
  const bigBytes = transport === "shm" ? GiB : 64 * MiB;
  const bigLabel = transport === "shm" ? "1 GiB" : "64 MiB";

  beforeAll(async () => {
    system = new QrexecSystem(transport);
    await system.startVm(2, "work");
    await system.startVm(3, "vault");
    const pids = join(system.dir.path, "pids");
    mkdirSync(pids);
    system.service("vault", "test.Sha", `exec ${SHA256}`);
    system.service("vault", "test.Gen", `${GENERATOR} | head -c "$1"`);
    // Records its pid under its argument's name, then echoes stdin.
    system.service("vault", "test.Pid", `echo $$ > "${pids}/$1"; exec cat`);
    system.service("vault", "test.Sink", `echo $$ > "${pids}/$1"; exec cat >/dev/null`);
    system.service("vault", "test.Source", `echo $$ > "${pids}/$1"; exec cat /dev/zero`);
    system.service(
      "vault",
      "test.Token",
      'echo "ready $1"; read token; echo "$1 $token $(($1 * $1 + 7))"',
    );
    system.service("vault", "test.Kill", "kill -9 $$");
    // SIGUSR1 (§6.6), then both directions on fd 0; it ends only after the caller answered.
    system.service(
      "vault",
      "test.Single",
      'kill -USR1 "$QREXEC_AGENT_PID"; echo "hello via ' +
        'fd0 $1" >&0; read reply; echo "got $reply" >&0',
    );
    // The same, ending at once after its output: its stdout EOF may reach the agent before its
    // signal does.
    system.service(
      "vault",
      "test.SingleExit",
      'kill -USR1 "$QREXEC_AGENT_PID"; echo "hello via fd0 $1" >&0',
    );
    // Reads its (empty) stdin to EOF first; then signals, writes to fd 0 and exits at once.
    system.service(
      "vault",
      "test.ClosedStdin",
      'cat >/dev/null; kill -USR1 "$QREXEC_AGENT_PID"; echo "hello via fd0 $1" >&0',
    );
    // Stores what the caller sends, under its argument's name.
    system.service("vault", "test.Store", `cat > "${pids}/$1"`);
    system.service(
      "vault",
      "test.Usr1",
      `if [ "$1" = switch ]; then
  # A child of the service signals and then uses fd 0: the agent maps it through its parent.
  sh -c 'kill -USR1 "$QREXEC_AGENT_PID"; echo "switched via fd0" >&0
    read line; echo "switched got $line" >&0'
else
  echo "stay ready"
  read line
  echo "stay got $line"
fi`,
    );
    system.service("vault", "test.Echo", "exec cat");
    system.service("work", "test.Echo", "exec cat");
    system.service("dom0", "test.Dom0", "exec cat");
    system.policy(
      "test.Deny* * * deny",
      "test.Dom0* work dom0 allow dom0",
      "* work vault allow",
      "* vault work allow",
    );
  });

  afterAll(async () => {
    await system.stop();
  });

  function pidFile(name: string): string {
    return join(system.dir.path, "pids", name);
  }

  /** The pid a test.Pid service wrote under `name`. */
  async function servicePid(name: string): Promise<number> {
    await waitFor(
      () => existsSync(pidFile(name)) && readFileSync(pidFile(name), "utf8").endsWith("\n"),
      `the service ${name} to start`,
    );
    return Number(readFileSync(pidFile(name), "utf8").trim());
  }

  /** Waits until the running service `pid` has read `bytes` of the call's stdin. */
  async function midTransfer(pid: number, bytes = 8 * MiB): Promise<void> {
    await waitFor(
      () => bytesRead(pid) >= bytes,
      `service ${pid} to read ${bytes} bytes (read ${bytesRead(pid)})`,
    );
  }

  function explain(result: { code: number | null; stderr?: string }): string {
    return `exit ${result.code}, stderr: ${result.stderr ?? ""}\n${system.logs()}`;
  }

  function ourProcesses(): Array<{ role: string; pid: number }> {
    return [...system.vms.values()].flatMap((vm) => [
      { role: `agent:${vm.name}`, pid: vm.agent.pid },
      { role: `daemon:${vm.name}`, pid: vm.daemon.pid },
    ]);
  }

  function resources(): Resources {
    const processes = ourProcesses()
      .filter(({ pid }) => isRunning(pid))
      .map(({ role, pid }) => {
        const targets = fdTargets(pid);
        return {
          role,
          pid,
          fds: targets.length,
          memfds: targets.filter((target) => target.startsWith("/memfd:")).length,
          memfdMaps: memfdMappings(pid),
        };
      });
    const vchanFiles = transport === "shm" ? readdirSync(system.vchanDir).sort() : [];
    return { processes, vchanFiles, listening: listeningSocketsIn(system.vchanDir).sort() };
  }

  function zombies(): string[] {
    return childrenOf(ourProcesses().map(({ pid }) => pid))
      .filter((child) => child.state === "Z")
      .map((child) => `${child.pid} (${child.comm}, parent ${child.ppid})`);
  }

  /**
   * Resources once the calls before have been torn down everywhere: a client can exit before
   * the far ends (a daemon serving a call into dom0, say) have closed their side of its vchan.
   */
  async function settledResources(): Promise<Resources> {
    const deadline = Date.now() + 3000;
    let previous = resources();
    for (;;) {
      await Bun.sleep(100);
      const current = resources();
      if (JSON.stringify(current) === JSON.stringify(previous) || Date.now() > deadline)
        return current;
      previous = current;
    }
  }

  /** What differs from `before` beyond the slack: leaked fds, shm, zombies, rendezvous files. */
  function leaks(before: Resources): string[] {
    const now = resources();
    const problems: string[] = [];
    for (const earlier of before.processes) {
      const current = now.processes.find((entry) => entry.pid === earlier.pid);
      if (!current) continue; // killed by the test
      if (current.fds > earlier.fds + FD_SLACK)
        problems.push(
          `${earlier.role}: ${earlier.fds} fds before, ` +
            `${current.fds} after: ${fdTargets(earlier.pid).join(" ")}`,
        );
      if (current.memfds !== earlier.memfds)
        problems.push(
          `${earlier.role}: ${earlier.memfds} memfd fds before, ${current.memfds} after`,
        );
      if (current.memfdMaps !== earlier.memfdMaps)
        problems.push(
          `${earlier.role}: ${earlier.memfdMaps} memfd mappings before, ${current.memfdMaps} after`,
        );
    }
    if (now.vchanFiles.join() !== before.vchanFiles.join())
      problems.push(`vchan dir held [${before.vchanFiles}] before, [${now.vchanFiles}] after`);
    if (now.listening.join() !== before.listening.join())
      problems.push(
        `listening vchan sockets [${before.listening}] before, [${now.listening}] after`,
      );
    for (const zombie of zombies()) problems.push(`zombie child ${zombie}`);
    return problems;
  }

  /** Clean-up is asynchronous (reaping, closing): allow it a moment, then report what is left. */
  async function expectNoLeaks(before: Resources): Promise<void> {
    const noLeaks = () => leaks(before).length === 0;
    // A timeout is not the verdict: the expect below names exactly what is left.
    await waitFor(noLeaks, "the resources to be released", 3000).catch(() => {});
    expect(leaks(before), system.logs()).toEqual([]);
  }

  // ------------------------------------------------------------------------- big transfers

  test(`${bigLabel} from the caller into a service: the sha256 is the generator's`, async () => {
    const expected = await referenceSum(bigBytes);
    const result = await system.run(
      2,
      ["sh", "-c", `${GENERATOR} | head -c ${bigBytes} | qrexec-client-vm vault test.Sha`],
      "",
      { PATH: `${join(import.meta.dir, "..", "..", "bin")}:${process.env.PATH}` },
    );
    expect(result.code, explain(result)).toBe(0);
    expect(hexSum(result.stdout)).toBe(expected);
  });

  test(`${bigLabel} from a service to the caller: the sha256 is the generator's`, async () => {
    const expected = await referenceSum(bigBytes);
    const script =
      `qrexec-client-vm vault test.Gen+${bigBytes} | ` +
      `${SHA256}; echo "client exit \${PIPESTATUS[0]}"`;
    const result = await system.run(2, ["bash", "-c", script], "", {
      PATH: `${join(import.meta.dir, "..", "..", "bin")}:${process.env.PATH}`,
    });
    expect(result.stdout, explain(result)).toContain("client exit 0\n");
    expect(hexSum(result.stdout)).toBe(expected);
  });

  // ------------------------------------------------------------------------- many calls at once

  test("100 concurrent calls through one agent: all running at once, all correct", async () => {
    const count = 100;
    const calls = Array.from({ length: count }, (_, index) => {
      const child = system.spawnClientVm("work", ["vault", `test.Token+${index}`]);
      return {
        index,
        child,
        output: new OutputReader(child.stdout),
        errors: new Response(child.stderr).text(),
      };
    });
    let results;
    try {
      // Every service says it is ready and then waits for its stdin: all 100 run together.
      for (const call of calls) await call.output.until(`ready ${call.index}\n`, 30_000);
      for (const call of calls) {
        call.child.stdin.write(`token-${call.index}-${transport}\n`);
        await call.child.stdin.end();
      }
      results = await Promise.all(
        calls.map(async (call) => ({
          ...call,
          code: await exitWithin(call.child, 30_000),
          stdout: await call.output.rest(),
          stderr: await call.errors,
        })),
      );
    } finally {
      // A failure must not leave 100 calls behind for the next tests.
      for (const call of calls) call.child.kill("SIGKILL");
    }
    for (const result of results) {
      const { index } = result;
      expect(result.stdout, explain(result)).toBe(
        `ready ${index}\n${index} token-${index}-${transport} ${index * index + 7}\n`,
      );
      expect(result.code, explain(result)).toBe(0);
    }
  }, 120_000);

  // ------------------------------------------------------------------------- peers killed

  test("a service killed mid-transfer: the caller exits with 137 within 1 s", async () => {
    const before = await settledResources();
    const client = system.spawnClientVm("work", ["vault", "test.Pid+killed-service"], {
      stdin: Bun.file("/dev/zero"),
      stdout: "ignore",
    });
    const pid = await servicePid("killed-service");
    await midTransfer(pid);
    process.kill(pid, "SIGKILL");
    const killedAt = performance.now();
    const code = await exitWithin(client, 5000);
    const elapsed = performance.now() - killedAt;
    expect(code, explain({ code, stderr: await new Response(client.stderr).text() })).toBe(137);
    expect(elapsed).toBeLessThan(1000);
    await expectNoLeaks(before);
  });

  test.each([
    [
      "reading: its stdin ends",
      "test.Sink",
      { stdin: Bun.file("/dev/zero"), stdout: "ignore" as const },
    ],
    [
      "writing: it gets SIGPIPE",
      "test.Source",
      { stdin: "ignore" as const, stdout: "ignore" as const },
    ],
  ])(
    "a caller killed mid-call, the service %s within 1 s; the agents serve on",
    async (_, service, stdio) => {
      const before = await settledResources();
      const name = `killed-caller-${service}`;
      const client = system.spawnClientVm("work", ["vault", `${service}+${name}`], stdio);
      const pid = await servicePid(name);
      await midTransfer(pid);
      client.kill("SIGKILL");
      const killedAt = performance.now();
      await waitFor(() => !isRunning(pid), `the service of a killed caller to end`, 5000);
      expect(performance.now() - killedAt).toBeLessThan(1000);
      expect(system.vms.get("vault")!.agent.exitCode).toBeNull();
      expect(system.vms.get("work")!.agent.exitCode).toBeNull();
      const after = await system.clientVm("work", ["vault", "test.Echo"], "still serving\n");
      expect(after.stdout, explain(after)).toBe("still serving\n");
      expect(after.code).toBe(0);
      await expectNoLeaks(before);
    },
  );

  // Once the caller is gone, the service's stdout and stderr are closed at once (§6.9): a service
  // blocked writing them would never read its remaining input, and the call would never end.
  test("a caller killed while its output is backed up: the service ends within 1 s", async () => {
    // The caller's stdout is a FIFO nobody reads: both directions back up.
    const fifo = join(system.dir.path, "backed-up.fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const sink = openSync(fifo, "r+");
    try {
      const client = system.spawnClientVm("work", ["vault", "test.Pid+backed-up"], {
        stdin: Bun.file("/dev/zero"),
        stdout: sink,
      });
      const pid = await servicePid("backed-up");
      let last = -1;
      await waitFor(() => {
        const now = bytesRead(pid);
        const stalled = now === last && now > 0;
        last = now;
        return stalled;
      }, "the transfer to back up");
      client.kill("SIGKILL");
      const killedAt = performance.now();
      await waitFor(() => !isRunning(pid), `the service of a killed caller to end`, 5000);
      expect(performance.now() - killedAt).toBeLessThan(1000);
    } finally {
      closeSync(sink);
    }
  });

  test("a batch of ended, failed, refused and killed calls leaves nothing behind", async () => {
    // Warm up every path once: the runtime opens some fds lazily, on first use.
    await system.clientVm("work", ["vault", "test.Echo"], "warm-up\n");
    await system.clientVm("work", ["dom0", "test.Dom0"], "warm-up\n");
    const before = await settledResources();
    // Every control vchan is connected: no rendezvous socket is left, on either transport.
    expect(before.vchanFiles).toEqual([]);
    expect(before.listening).toEqual([]);
    for (let i = 0; i < 10; i++) {
      const result = await system.clientVm("work", ["vault", "test.Echo"], `sequential ${i}\n`);
      expect(result.stdout, explain(result)).toBe(`sequential ${i}\n`);
    }
    const parallel = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        system.clientVm("work", ["vault", "test.Echo"], `parallel ${i}\n`),
      ),
    );
    parallel.forEach((result, i) => expect(result.stdout, explain(result)).toBe(`parallel ${i}\n`));
    expect((await system.clientVm("work", ["dom0", "test.Dom0"], "to dom0\n")).stdout).toBe(
      "to dom0\n",
    );
    expect((await system.clientVm("work", ["vault", "test.Deny"])).code).toBe(126);
    expect((await system.clientVm("work", ["vault", "test.Missing"])).code).toBe(127);
    expect((await system.clientVm("work", ["vault", "test.Kill"])).code).toBe(137);
    expect(
      (await system.client(["-d", "vault", "DEFAULT:QUBESRPC test.Echo dom0"], "from dom0\n"))
        .stdout,
    ).toBe("from dom0\n");
    await expectNoLeaks(before);
  });

  test("the target's agent killed mid-call: the caller says so, exits 255; no leak", async () => {
    const before = await settledResources();
    const client = system.spawnClientVm("work", ["vault", "test.Pid+killed-agent"], {
      stdin: Bun.file("/dev/zero"),
      stdout: "ignore",
    });
    const pid = await servicePid("killed-agent");
    await midTransfer(pid);
    try {
      const killing = system.killAgent("vault");
      const killedAt = performance.now();
      const code = await exitWithin(client, 5000);
      const elapsed = performance.now() - killedAt;
      await killing;
      // The vchan closed before an exit code came (§6.9, §8): 255, and said.
      const stderr = await new Response(client.stderr).text();
      expect(code, explain({ code, stderr })).toBe(255);
      expect(stderr).toContain("vchan connection closed early: vault sent no exit status");
      expect(elapsed).toBeLessThan(1000);
      // The orphaned service sees its stdin end (or SIGPIPE) and ends too.
      await waitFor(() => !isRunning(pid), "the orphaned service to end", 1000);
      await system.reviveAgent("vault");
      // The caller's agent and both daemons hold what they held before: nothing of the dead
      // call, and the target's daemon a new control vchan in place of the old one.
      await expectNoLeaks(before);
    } finally {
      if (system.vms.get("vault")!.agent.exitCode !== null) await system.reviveAgent("vault");
    }
  });

  test("the same from dom0: qrexec-client says so and exits 255", async () => {
    const argv = [
      join(BIN, "qrexec-client"),
      `--socket-dir=${system.socketDir}`,
      "-d",
      "vault",
      "DEFAULT:QUBESRPC test.Pid+killed-agent-dom0 dom0",
    ];
    const client = system.spawn(0, argv, { stdin: Bun.file("/dev/zero"), stdout: "ignore" });
    const pid = await servicePid("killed-agent-dom0");
    await midTransfer(pid);
    try {
      const killing = system.killAgent("vault");
      const code = await exitWithin(client, 5000);
      await killing;
      const stderr = await new Response(client.stderr).text();
      expect(code, explain({ code, stderr })).toBe(255);
      expect(stderr).toContain(
        "qrexec-client: vchan connection closed early: vault sent no exit status",
      );
      await system.reviveAgent("vault");
    } finally {
      if (system.vms.get("vault")!.agent.exitCode !== null) await system.reviveAgent("vault");
    }
  });

  // ------------------------------------------------------------------------- restarts

  test("agent restart: kill -9 the agent, start another; the daemon reconnects", async () => {
    const vault = system.vms.get("vault")!;
    const daemonPid = vault.daemon.pid;
    const logBefore = system.logOfProcess(vault.daemon).length;
    await system.killAgent("vault");
    // While the agent is away the target cannot be reached: the call is refused (§2.1 step 9).
    const refused = await system.clientVm("work", ["vault", "test.Echo"], "nobody there\n");
    expect(refused.code, explain(refused)).toBe(126);
    await system.reviveAgent("vault");
    // The same daemon process, reconnected (§7.1, §13.17).
    expect(vault.daemon.pid).toBe(daemonPid);
    expect(vault.daemon.exitCode).toBeNull();
    expect(system.logOfProcess(vault.daemon).slice(logBefore)).toMatch(
      /agent reconnected, protocol 4/,
    );
    const result = await system.clientVm("work", ["vault", "test.Echo"], "after the restart\n");
    expect(result.stdout, explain(result)).toBe("after the restart\n");
    expect(result.code).toBe(0);
    const fromDom0 = await system.client(
      ["-d", "vault", "DEFAULT:QUBESRPC test.Echo dom0"],
      "dom0 too\n",
    );
    expect(fromDom0.stdout, explain(fromDom0)).toBe("dom0 too\n");
    // The restarted agent also calls out.
    const outgoing = await system.clientVm("vault", ["work", "test.Echo"], "and calls out\n");
    expect(outgoing.stdout, explain(outgoing)).toBe("and calls out\n");
  });

  test("daemon restart: the agent stays up, takes the new daemon; a call survives", async () => {
    const vault = system.vms.get("vault")!;
    const agentPid = vault.agent.pid;
    const client = system.spawnClientVm("work", ["vault", "test.Echo"]);
    const output = new OutputReader(client.stdout);
    client.stdin.write("before\n");
    client.stdin.flush();
    await output.until("before\n");
    await system.restartDaemon("vault");
    await system.restartDaemon("work");
    client.stdin.write("after\n");
    await client.stdin.end();
    expect(await output.rest()).toBe("before\nafter\n");
    expect(await client.exited).toBe(0);
    expect(vault.agent.pid).toBe(agentPid);
    expect(vault.agent.exitCode).toBeNull();
    const result = await system.clientVm("work", ["vault", "test.Echo"], "through new daemons\n");
    expect(result.stdout, explain(result)).toBe("through new daemons\n");
    expect(result.code).toBe(0);
    const fromDom0 = await system.client(
      ["-d", "vault", "DEFAULT:QUBESRPC test.Echo dom0"],
      "dom0 too\n",
    );
    expect(fromDom0.stdout, explain(fromDom0)).toBe("dom0 too\n");
  });

  test("a daemon dying with a request unanswered: the agent refuses it at once", async () => {
    const rules = [
      "test.Hang work vault hang",
      "test.Deny* * * deny",
      "test.Dom0* work dom0 allow dom0",
      "* work vault allow",
      "* vault work allow",
    ];
    system.policy(...rules);
    try {
      const logBefore = existsSync(system.policyLog)
        ? readFileSync(system.policyLog, "utf8").length
        : 0;
      const client = system.spawnClientVm("work", ["vault", "test.Hang"], { stdin: "ignore" });
      const stderr = new Response(client.stderr).text();
      await waitFor(
        () =>
          existsSync(system.policyLog) &&
          readFileSync(system.policyLog, "utf8").slice(logBefore).includes("work vault test.Hang"),
        "the policy query",
      );
      const killedAt = performance.now();
      await system.restartDaemon("work");
      expect(await client.exited).toBe(126);
      expect(await stderr).toBe("Request refused\n");
      // Refused when the agent lost its daemon, not when the 5 s policy answer would have come.
      expect(performance.now() - killedAt).toBeLessThan(4_000);
      expect(system.logOfProcess(system.vms.get("work")!.agent)).toContain(
        "refused: the daemon went away before answering it",
      );
    } finally {
      system.policy(...rules.slice(1));
    }
    const after = await system.clientVm("work", ["vault", "test.Echo"], "next call\n");
    expect(after.stdout, explain(after)).toBe("next call\n");
  });

  // ------------------------------------------------------------------------- SIGUSR1

  test("SIGUSR1: a service moves to its stdin socket both ways (test_stdio_socket)", async () => {
    for (let i = 0; i < 5; i++) {
      const client = system.spawnClientVm("work", ["vault", `test.Single+${i}`]);
      const output = new OutputReader(client.stdout);
      await output.until(`hello via fd0 ${i}\n`, 10_000);
      client.stdin.write(`answer ${i}\n`);
      await client.stdin.end();
      const code = await exitWithin(client, 10_000);
      expect(await output.rest()).toBe(`hello via fd0 ${i}\ngot answer ${i}\n`);
      expect(code).toBe(0);
    }
  });

  // The service's stdout EOF (it exits) can reach the pump before its signal's record does (the
  // handler runs on a Bun thread); the pump holds that EOF until it has seen every SIGUSR1 sent
  // before it (zig/pump/pump.zig, settle_held_eof). Lost about 1 call in 10 before that.
  test("SIGUSR1: a service writes fd 0 and exits at once; the output always arrives", async () => {
    const failures: string[] = [];
    for (let i = 0; i < 40; i++) {
      const client = system.spawnClientVm("work", ["vault", `test.SingleExit+${i}`]);
      const output = new OutputReader(client.stdout);
      const code = await exitWithin(client, 5000);
      const text = await output.rest();
      if (text !== `hello via fd0 ${i}\n` || code !== 0)
        failures.push(`${i}: exit ${code}, output ${JSON.stringify(text)}`);
    }
    expect(failures).toEqual([]);
  });

  // The caller's stdin EOF only shuts the service's stdin socket down, so SIGUSR1 can still
  // switch to it (upstream's test_stdio_socket_closed_stdin): the service no longer dies of
  // SIGPIPE.
  test("SIGUSR1 after the caller's stdin ended (test_stdio_socket_closed_stdin)", async () => {
    for (let i = 0; i < 10; i++) {
      const result = await system.clientVm("work", ["vault", `test.ClosedStdin+closed${i}`]);
      expect(result.stdout, explain(result)).toBe(`hello via fd0 closed${i}\n`);
      expect(result.code).toBe(0);
    }
  });

  test("SIGUSR1 with two calls running: only the sender's call switches", async () => {
    const stay = system.spawnClientVm("work", ["vault", "test.Usr1+stay"]);
    const stayOutput = new OutputReader(stay.stdout);
    await stayOutput.until("stay ready\n");
    const switching = system.spawnClientVm("work", ["vault", "test.Usr1+switch"]);
    const switchOutput = new OutputReader(switching.stdout);
    await switchOutput.until("switched via fd0\n");
    switching.stdin.write("one\n");
    await switching.stdin.end();
    expect(await exitWithin(switching, 10_000)).toBe(0);
    expect(await switchOutput.rest()).toBe("switched via fd0\nswitched got one\n");
    // Had the other call switched too, its fd 1 would be shut: its echo would die of SIGPIPE.
    stay.stdin.write("two\n");
    await stay.stdin.end();
    expect(await exitWithin(stay, 10_000)).toBe(0);
    expect(await stayOutput.rest()).toBe("stay ready\nstay got two\n");
  });

  test("SIGUSR1 from qrexec-client-vm's local program (QREXEC_AGENT_PID: the client)", async () => {
    const local = [
      "/bin/sh",
      "-c",
      'kill -USR1 "$QREXEC_AGENT_PID"; echo "from local" >&0; read ' +
        'reply; echo "local got: $reply; agent pid is parent: $([ ' +
        '"$QREXEC_AGENT_PID" = "$PPID" ] && echo yes)" >&"$SAVED_FD_1"',
    ];
    const client = system.spawnClientVm("work", ["vault", "test.Echo", ...local], {
      stdin: "ignore",
    });
    const output = new OutputReader(client.stdout);
    const code = await exitWithin(client, 10_000);
    expect(
      await output.rest(),
      explain({ code, stderr: await new Response(client.stderr).text() }),
    ).toBe("local got: from local; agent pid is parent: yes\n");
    expect(code).toBe(0);
  });

  test("SIGUSR1 from qrexec-client-vm's local program that writes fd 0 and exits", async () => {
    const pids = join(system.dir.path, "pids");
    const failures: string[] = [];
    // Lost about 1 call in 100: the program's exit hung its stdin socket up, which was closed
    // (with what it wrote) before the signal was seen; it is now only shut down.
    for (let i = 0; i < 20; i++) {
      const local = ["/bin/sh", "-c", `kill -USR1 "$QREXEC_AGENT_PID"; echo "local ${i}" >&0`];
      const result = await system.clientVm("work", ["vault", `test.Store+local${i}`, ...local]);
      const stored = existsSync(join(pids, `local${i}`))
        ? readFileSync(join(pids, `local${i}`), "utf8")
        : null;
      if (stored !== `local ${i}\n` || result.code !== 0)
        failures.push(
          `${i}: exit ${result.code}, stored ${JSON.stringify(stored)} ${result.stderr}`,
        );
    }
    expect(failures).toEqual([]);
  });
});
