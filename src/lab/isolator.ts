// What the admin service does differently for isolated domains: each one's rendezvous directory
// and broker watch, its directories given to its uid, its agent started inside its namespaces,
// and dom0's processes pointed at dom0's own rendezvous directory. With isolation "none" every
// method leaves things as they were.

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { VchanBroker } from "./broker.ts";
import { BIN_DIR } from "./environment.ts";
import {
  domainProcesses,
  domainVchanDir,
  type IsolationMode,
  isolatedArgv,
  isolationDir,
  prepareDomainDirs,
  rootsDir,
} from "./isolation.ts";
import type { LabLayout } from "./layout.ts";

/** The Bun programs that run inside domains: their compiled modules are cached by dom0. */
const DOMAIN_PROGRAMS = [
  "qrexec-agent",
  "qrexec-client-vm",
  "qfile-unpacker",
  "qfile-agent",
  "qvm-copy",
];

interface Domain {
  name: string;
  id: number;
}

export class Isolator {
  readonly #broker: VchanBroker | null;

  constructor(
    readonly layout: LabLayout,
    readonly mode: IsolationMode,
    log: (message: string) => void,
  ) {
    this.#broker = mode === "namespaces" ? new VchanBroker(log) : null;
  }

  /** At lab up, after the lab's directories were cleaned: dom0's rendezvous directory. */
  prepare(): void {
    if (!this.#broker) return;
    rmSync(isolationDir(this.layout), { recursive: true, force: true });
    const dom0 = domainVchanDir(this.layout, 0);
    mkdirSync(dom0, { recursive: true });
    this.#broker.add(0, dom0, "dom0");
  }

  /**
   * Fills Bun's transpiler cache with what domains run. Domains see the cache read-only (one
   * they could write would feed code to dom0's processes), so without this every agent and
   * DisposableVM would compile its modules again at each start.
   */
  async warm(dom0Env: Record<string, string>): Promise<void> {
    if (!this.#broker) return;
    const env = { ...dom0Env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: this.layout.bunCacheDir };
    const help = (program: string) =>
      Bun.spawn([join(BIN_DIR, program), "--help"], { env, stdio: ["ignore", "ignore", "ignore"] });
    await Promise.all(DOMAIN_PROGRAMS.map((program) => help(program).exited));
  }

  /** A domain's own processes: a private /tmp, and only the lab's cache (read-only) is there. */
  domainEnv(env: Record<string, string>): Record<string, string> {
    if (!this.#broker) return env;
    return { ...env, TMPDIR: "/tmp", BUN_RUNTIME_TRANSPILER_CACHE_PATH: this.layout.bunCacheDir };
  }

  /** Before `domain` starts: its directories, and its agent's command inside its namespaces. */
  starting(domain: Domain, argv: string[]): string[] {
    if (!this.#broker) return argv;
    prepareDomainDirs(this.layout, domain);
    this.#broker.add(domain.id, domainVchanDir(this.layout, domain.id), domain.name);
    return isolatedArgv(this.layout, domain, argv);
  }

  /**
   * Before the supervisor stops a domain's agent (`unsharePid`): `unshare` blocks SIGTERM while
   * it waits, so the namespace's init gets it instead; it passes it to the agent and exits, and
   * the kernel ends whatever else runs in the domain.
   */
  stopping(unsharePid: number | null): void {
    if (!this.#broker || unsharePid === null) return;
    const processes = domainProcesses(unsharePid);
    try {
      if (processes) process.kill(processes.init, "SIGTERM");
    } catch {
      // The domain's init is already gone.
    }
  }

  /** After `domain`'s processes are gone: its rendezvous directory and root mount point go. */
  stopped(domain: Domain): void {
    if (!this.#broker) return;
    this.#broker.remove(domain.id);
    rmSync(domainVchanDir(this.layout, domain.id), { recursive: true, force: true });
    rmSync(join(rootsDir(this.layout), domain.name), { recursive: true, force: true });
  }

  close(): void {
    this.#broker?.close();
    if (this.#broker) rmSync(isolationDir(this.layout), { recursive: true, force: true });
  }
}
