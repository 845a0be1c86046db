// A QrexecSystem whose daemons ask our real policy: either bin/qrexec-policy-daemon over its socket
// (`mode: "socket"`, the fallback program is /bin/false so only the socket can allow), or
// bin/qrexec-policy-exec as --policy-program (`mode: "program"`). The policy is a policy.d
// directory and a domains file in the system's directory; the ask program is a shell script.
// The stand-in policy of QrexecSystem stays the default for every other test.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BIN, QrexecSystem, waitFor, type Transport, type Vm } from "./system.ts";

export type PolicyMode = "socket" | "program";

export class PolicySystem extends QrexecSystem {
  readonly policyDir: string;
  readonly domainsFile: string;
  readonly askProgram: string;
  readonly policySocket: string;
  policyDaemon: Subprocess | null = null;
  readonly #policyDaemonLog: string[] = [];
  readonly #daemonLogs = new Map<string, string[]>();

  constructor(
    readonly mode: PolicyMode,
    transport: Transport = "shm",
  ) {
    super(transport);
    this.policyDir = join(this.dir.path, "policy.d");
    this.domainsFile = join(this.dir.path, "domains.toml");
    this.askProgram = join(this.dir.path, "ask-program");
    this.policySocket = join(this.dir.path, "policy.sock");
    mkdirSync(this.policyDir, { recursive: true });
    writeFileSync(this.domainsFile, "");
    this.setAskProgram("exit 1");
  }

  /** Writes policy.d/NAME. */
  writePolicy(name: string, text: string): string {
    const path = join(this.policyDir, name);
    writeFileSync(path, text);
    return path;
  }

  domains(toml: string): void {
    writeFileSync(this.domainsFile, toml);
  }

  /** The ask program's body (sh); it gets the question as JSON on stdin and QRX_ASK_* variables. */
  setAskProgram(script: string): void {
    writeFileSync(this.askProgram, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
  }

  #policyEnv(): Record<string, string> {
    return {
      QRX_POLICY_DIR: this.policyDir,
      QRX_DOMAINS: this.domainsFile,
      QRX_ASK_PROGRAM: this.askProgram,
    };
  }

  /** Starts bin/qrexec-policy-daemon on `policySocket` (socket mode); waits until it listens. */
  async startPolicyDaemon(): Promise<void> {
    const daemon = Bun.spawn(
      [
        join(BIN, "qrexec-policy-daemon"),
        "--socket",
        this.policySocket,
        "--policy-dir",
        this.policyDir,
        "--domains",
        this.domainsFile,
        "--ask-program",
        this.askProgram,
        "--no-tty",
        "--debounce",
        "50",
      ],
      { env: this.env(0), stdio: ["ignore", "ignore", "pipe"] },
    );
    this.policyDaemon = daemon;
    void (async () => {
      for await (const chunk of daemon.stderr as ReadableStream<Uint8Array>)
        this.#policyDaemonLog.push(new TextDecoder().decode(chunk));
    })();
    await waitFor(
      () => existsSync(this.policySocket) || daemon.exitCode !== null,
      "the policy daemon",
    );
    if (daemon.exitCode !== null)
      throw new Error(`the policy daemon exited: ${this.policyDaemonLog()}`);
  }

  policyDaemonLog(): string {
    return this.#policyDaemonLog.join("");
  }

  /**
   * stderr of the qrexec-daemon of `vm` (in program mode it holds qrexec-policy-exec's decisions).
   */
  daemonLog(vm: string): string {
    return (this.#daemonLogs.get(vm) ?? []).join("");
  }

  override startDaemon(vm: Vm): Subprocess {
    const policy =
      this.mode === "socket"
        ? [`--policy-socket=${this.policySocket}`, "--policy-program=/bin/false"]
        : ["--policy-socket=", `--policy-program=${join(BIN, "qrexec-policy-exec")}`];
    const daemon = Bun.spawn(
      [
        join(BIN, "qrexec-daemon"),
        "--direct",
        `--socket-dir=${this.socketDir}`,
        ...policy,
        String(vm.id),
        vm.name,
      ],
      {
        env: this.env(0, this.#policyEnv()),
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    const chunks: string[] = [];
    this.#daemonLogs.set(vm.name, chunks);
    void (async () => {
      for await (const chunk of daemon.stderr as ReadableStream<Uint8Array>)
        chunks.push(new TextDecoder().decode(chunk));
    })();
    return daemon;
  }

  override async stop(): Promise<void> {
    if (this.policyDaemon !== null) {
      this.policyDaemon.kill("SIGTERM");
      await this.policyDaemon.exited;
    }
    await super.stop();
  }

  allLogs(): string {
    return (
      [...this.#daemonLogs]
        .map(([name, chunks]) => `--- daemon:${name}\n${chunks.join("")}`)
        .join("\n") + `\n--- policy daemon\n${this.policyDaemonLog()}`
    );
  }
}
