// One long-running process of the lab (an agent, a daemon, the policy daemon): started with its
// output appended to its log, restarted when it dies on its own, stopped on request. A process
// that keeps dying is restarted with a growing delay so a broken set-up does not spin.

import { closeSync, openSync } from "node:fs";
import type { Subprocess } from "bun";

const RESTART_DELAY_MIN_MS = 100;
const RESTART_DELAY_MAX_MS = 5_000;
/** A process that ran this long before dying is restarted at once again. */
const HEALTHY_AFTER_MS = 10_000;
/** SIGTERM, then SIGKILL after this long. */
const STOP_GRACE_MS = 2_000;

export interface SupervisedSpec {
  /** For log lines: "agent of work". */
  label: string;
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  logFile: string;
}

export class Supervised {
  #child: Subprocess | null = null;
  #stopping = false;
  #delayMs = RESTART_DELAY_MIN_MS;
  #restartTimer: Timer | null = null;
  /** Number of times it was restarted after dying. */
  restarts = 0;
  startedAt = 0;
  /** Called after each restart (the domain may need to wait for readiness again). */
  onRestart: (() => void) | null = null;

  constructor(
    readonly spec: SupervisedSpec,
    readonly log: (message: string) => void,
  ) {}

  get pid(): number | null {
    return this.#child?.exitCode === null && this.#child.signalCode === null
      ? this.#child.pid
      : null;
  }

  /** Whether the current child has exited (or never started). */
  get exited(): boolean {
    return this.pid === null;
  }

  start(): void {
    this.#stopping = false;
    const logFd = openSync(this.spec.logFile, "a");
    try {
      this.#child = Bun.spawn(this.spec.argv, {
        env: this.spec.env,
        cwd: this.spec.cwd,
        stdio: ["ignore", logFd, logFd],
        onExit: (child, code, signal) => this.#onExit(child, code, signal),
      });
    } finally {
      closeSync(logFd);
    }
    this.startedAt = Date.now();
  }

  #onExit(child: Subprocess, code: number | null, signal: number | NodeJS.Signals | null): void {
    if (child !== this.#child || this.#stopping) return;
    const ranMs = Date.now() - this.startedAt;
    const how = signal !== null ? `was killed by ${signal}` : `exited with status ${code}`;
    if (ranMs >= HEALTHY_AFTER_MS) this.#delayMs = RESTART_DELAY_MIN_MS;
    this.log(`${this.spec.label} (pid ${child.pid}) ${how}; restarting in ${this.#delayMs} ms`);
    const delay = this.#delayMs;
    this.#delayMs = Math.min(this.#delayMs * 2, RESTART_DELAY_MAX_MS);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping) return;
      this.restarts++;
      this.start();
      this.onRestart?.();
    }, delay);
  }

  /** SIGTERM, SIGKILL after a grace period; resolves once it is gone. No restart follows. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = null;
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    await child.exited;
    clearTimeout(killer);
  }
}
