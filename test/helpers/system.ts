// A small qrexec system of real processes for integration tests: per VM a qrexec-agent and a
// qrexec-daemon (from bin/), dom0 services, a policy program, and helpers to run the clients.
// Nothing of ours is mocked; the policy program is the stand-in test/fixtures/policy-exec.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { tempDir } from "./paths.ts";

const ROOT = join(import.meta.dir, "..", "..");
export const BIN = join(ROOT, "bin");
const POLICY_PROGRAM = join(ROOT, "test", "fixtures", "policy-exec");

export type Transport = "shm" | "socket";

export interface Vm {
  id: number;
  name: string;
  rpcDir: string;
  agentSocket: string;
  agent: Subprocess;
  daemon: Subprocess;
  agentLog: string;
  daemonLog: string;
  /** Extra agent arguments (e.g. --peer-profile=mirage) and environment, kept for restarts. */
  agentArgs: string[];
  agentEnv: Record<string, string>;
}

export interface VmOptions {
  agentArgs?: string[];
  agentEnv?: Record<string, string>;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    }
    await Bun.sleep(10);
  }
}

export class QrexecSystem {
  readonly dir = tempDir("qrx-sys-");
  readonly vchanDir: string;
  readonly socketDir: string;
  readonly dom0RpcDir: string;
  readonly policyFile: string;
  readonly policyLog: string;
  readonly vms = new Map<string, Vm>();
  readonly #logs: Array<{ name: string; chunks: string[] }> = [];
  readonly #logByProcess = new Map<Subprocess, string[]>();

  constructor(readonly transport: Transport = "shm") {
    this.vchanDir = join(this.dir.path, "vchan");
    this.socketDir = join(this.dir.path, "run");
    this.dom0RpcDir = join(this.dir.path, "dom0-rpc");
    this.policyFile = join(this.dir.path, "policy");
    this.policyLog = join(this.dir.path, "policy.log");
    for (const dir of [this.vchanDir, this.socketDir, this.dom0RpcDir])
      mkdirSync(dir, { recursive: true });
    writeFileSync(this.policyFile, "");
  }

  /** The environment of a process in `domain` (0 = dom0). */
  env(domain: number, extra: Record<string, string> = {}): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env))
      if (value !== undefined && !key.startsWith("QREXEC")) env[key] = value;
    Object.assign(env, {
      VCHAN_DOMAIN: String(domain),
      QRX_VCHAN: this.transport,
      QRX_VCHAN_DIR: this.vchanDir,
      VCHAN_SOCKET_DIR: this.vchanDir,
      QRX_TEST_POLICY: this.policyFile,
      QRX_TEST_POLICY_LOG: this.policyLog,
      QUBES_RPC_CONFIG_PATH: join(
        this.dir.path,
        domain === 0 ? "dom0-config" : `vm${domain}-config`,
      ),
    });
    if (domain === 0) env.QREXEC_SERVICE_PATH = this.dom0RpcDir;
    else {
      const vm = [...this.vms.values()].find((candidate) => candidate.id === domain);
      if (vm) {
        env.QREXEC_SERVICE_PATH = vm.rpcDir;
        env.QRX_AGENT_SOCKET = vm.agentSocket;
      }
    }
    return Object.assign(env, extra);
  }

  /** Policy rules: "SERVICE SOURCE TARGET allow|deny [REDIRECT]" lines (shell patterns). */
  policy(...rules: string[]): void {
    writeFileSync(this.policyFile, `${rules.join("\n")}\n`);
  }

  /** An executable service `name` in `domain` ("dom0" or a VM name), a shell script body. */
  service(domain: string, name: string, script: string): string {
    const dir = domain === "dom0" ? this.dom0RpcDir : this.vms.get(domain)!.rpcDir;
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return path;
  }

  /** A per-service config file (QUBES_RPC_CONFIG_PATH) in `domain`. */
  serviceConfig(domain: string, name: string, text: string): void {
    const id = domain === "dom0" ? 0 : this.vms.get(domain)!.id;
    const dir = join(this.dir.path, id === 0 ? "dom0-config" : `vm${id}-config`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, name), text);
  }

  #capture(name: string, stream: ReadableStream<Uint8Array>): string[] {
    const chunks: string[] = [];
    this.#logs.push({ name, chunks });
    void (async () => {
      for await (const chunk of stream) chunks.push(new TextDecoder().decode(chunk));
    })();
    return chunks;
  }

  /** Logs of every process started so far (for failure messages). */
  logs(): string {
    return this.#logs.map(({ name, chunks }) => `--- ${name}\n${chunks.join("")}`).join("\n");
  }

  /** What one process we started wrote to its stderr so far. */
  logOfProcess(child: Subprocess): string {
    return (this.#logByProcess.get(child) ?? []).join("");
  }

  logOf(name: string): string {
    return this.#logs
      .filter((log) => log.name === name)
      .map((log) => log.chunks.join(""))
      .join("");
  }

  /** Starts a VM: its agent, then its daemon, and waits until both are ready. */
  async startVm(id: number, name: string, options: VmOptions = {}): Promise<Vm> {
    const rpcDir = join(this.dir.path, `${name}-rpc`);
    mkdirSync(rpcDir, { recursive: true });
    const agentSocket = join(this.socketDir, `agent-${name}`);
    const vm = {
      id,
      name,
      rpcDir,
      agentSocket,
      agentArgs: options.agentArgs ?? [],
      agentEnv: options.agentEnv ?? {},
    } as Vm;
    this.vms.set(name, vm);
    vm.agent = this.startAgent(vm);
    await waitFor(() => existsSync(agentSocket), `the agent of ${name}`);
    vm.daemon = this.startDaemon(vm);
    await waitFor(
      () => existsSync(join(this.socketDir, `qrexec.${name}`)),
      `the daemon of ${name}`,
    );
    return vm;
  }

  startAgent(vm: Vm): Subprocess {
    const agent = Bun.spawn(
      [join(BIN, "qrexec-agent"), `--agent-socket=${vm.agentSocket}`, ...(vm.agentArgs ?? [])],
      {
        env: this.env(vm.id, vm.agentEnv ?? {}),
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    this.#logByProcess.set(
      agent,
      this.#capture(`agent:${vm.name}`, agent.stderr as ReadableStream<Uint8Array>),
    );
    return agent;
  }

  startDaemon(vm: Vm): Subprocess {
    const daemon = Bun.spawn(
      [
        join(BIN, "qrexec-daemon"),
        "--direct",
        `--socket-dir=${this.socketDir}`,
        `--policy-program=${POLICY_PROGRAM}`,
        "--policy-socket=",
        String(vm.id),
        vm.name,
      ],
      { env: this.env(0), stdio: ["ignore", "ignore", "pipe"] },
    );
    this.#logByProcess.set(
      daemon,
      this.#capture(`daemon:${vm.name}`, daemon.stderr as ReadableStream<Uint8Array>),
    );
    return daemon;
  }

  /** Runs a program with `domain`'s environment; stdin from `input`. */
  async run(
    domain: number,
    argv: string[],
    input: string | Uint8Array = "",
    extraEnv: Record<string, string> = {},
  ): Promise<RunResult> {
    const child = Bun.spawn(argv, {
      env: this.env(domain, extraEnv),
      stdin: typeof input === "string" ? new TextEncoder().encode(input) : input,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    return { code, stdout, stderr };
  }

  /** Starts a program with `domain`'s environment and returns it running (stdio as given). */
  spawn(
    domain: number,
    argv: string[],
    stdio: {
      stdin?: "pipe" | "ignore" | number | ReturnType<typeof Bun.file>;
      stdout?: "pipe" | "ignore" | number;
      stderr?: "pipe" | "ignore" | "inherit";
    } = {},
  ): Subprocess<"pipe", "pipe", "pipe"> {
    return Bun.spawn(argv, {
      env: this.env(domain),
      stdin: stdio.stdin ?? "pipe",
      stdout: stdio.stdout ?? "pipe",
      stderr: stdio.stderr ?? "pipe",
    }) as Subprocess<"pipe", "pipe", "pipe">;
  }

  /** qrexec-client-vm in `vm`, left running. */
  spawnClientVm(
    vm: string,
    args: string[],
    stdio: Parameters<QrexecSystem["spawn"]>[2] = {},
  ): Subprocess<"pipe", "pipe", "pipe"> {
    return this.spawn(this.vms.get(vm)!.id, [join(BIN, "qrexec-client-vm"), ...args], stdio);
  }

  /**
   * Kills the agent of `vm` with SIGKILL; returns once it is reaped and the VM's daemon noticed
   * (it removes its socket while its agent is gone, §7.1).
   */
  async killAgent(name: string): Promise<void> {
    const vm = this.vms.get(name)!;
    vm.agent.kill("SIGKILL");
    await vm.agent.exited;
    await waitFor(
      () => !existsSync(join(this.socketDir, `qrexec.${name}`)),
      `the daemon of ${name} to notice its agent died`,
    );
  }

  /** Starts a new agent for `vm` (same arguments); returns once its daemon has reconnected. */
  async reviveAgent(name: string): Promise<void> {
    const vm = this.vms.get(name)!;
    vm.agent = this.startAgent(vm);
    await waitFor(
      () => existsSync(join(this.socketDir, `qrexec.${name}`)),
      `the daemon of ${name} to reconnect`,
      30_000,
    );
  }

  /** Kills the daemon of `vm` with SIGKILL and starts a new one; returns once it is connected. */
  async restartDaemon(name: string): Promise<void> {
    const vm = this.vms.get(name)!;
    vm.daemon.kill("SIGKILL");
    await vm.daemon.exited;
    vm.daemon = this.startDaemon(vm);
    const daemon = vm.daemon;
    await waitFor(
      () => /connected to the agent/.test(this.logOfProcess(daemon)) || daemon.exitCode !== null,
      `a new daemon for ${name} to connect`,
      30_000,
    );
    if (daemon.exitCode !== null)
      throw new Error(
        `the new daemon of ${name} exited with ${daemon.exitCode}:\n${this.logOfProcess(daemon)}`,
      );
  }

  clientVm(
    vm: string,
    args: string[],
    input: string | Uint8Array = "",
    extraEnv: Record<string, string> = {},
  ): Promise<RunResult> {
    return this.run(
      this.vms.get(vm)!.id,
      [join(BIN, "qrexec-client-vm"), ...args],
      input,
      extraEnv,
    );
  }

  client(args: string[], input: string | Uint8Array = ""): Promise<RunResult> {
    return this.run(
      0,
      [join(BIN, "qrexec-client"), `--socket-dir=${this.socketDir}`, ...args],
      input,
    );
  }

  async stop(): Promise<void> {
    const processes = [...this.vms.values()].flatMap((vm) => [vm.agent, vm.daemon]);
    for (const child of processes) child.kill("SIGTERM");
    await Promise.all(processes.map((child) => child.exited));
    this.dir.remove();
  }
}
