// The program under test: started from the user's `--cmd` through `/bin/sh -c 'exec ...'` (so
// quoting works and the PID is the program's), with a socket-transport environment, placeholders
// expanded, its stderr kept for failure messages, and always stopped at the end of a case.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { shellQuote } from "../shell-quote.ts";

/** `{NAME}` placeholders in the command, replaced by shell-quoted values. */
export function expandPlaceholders(command: string, values: Record<string, string>): string {
  return command.replace(/\{([A-Z_]+)\}/g, (whole, name: string) => {
    const value = values[name];
    return value === undefined ? whole : shellQuote(value);
  });
}

export function hasPlaceholder(command: string, name: string): boolean {
  return command.includes(`{${name}}`);
}

/** A short temporary directory (unix socket paths must stay under 108 bytes). */
export function scratchDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * Variables that would point the program at another system (a lab, a real dom0); the kit sets its
 * own. Others (QRX_MIRAGE_BUGS, QRX_NATIVE_LIB, QRX_SPIN_NS, QRX_MAX_PAGES...) pass through.
 */
const POINTS_ELSEWHERE = new Set([
  "QUBES_RPC_CONFIG_PATH",
  "QRX_VCHAN",
  "QRX_VCHAN_DIR",
  "QRX_AGENT_SOCKET",
  "QRX_SOCKET_DIR",
  "QRX_QUBESD_SOCKET",
  "QRX_DIR",
  "QRX_DOMAINS",
  "QRX_POLICY_DIR",
  "QRX_TEST_POLICY",
  "QRX_TEST_POLICY_LOG",
]);

/** The environment without variables that would point the program at a real system. */
export function baseEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (key.startsWith("QREXEC") || key.startsWith("VCHAN_") || POINTS_ELSEWHERE.has(key)) continue;
    env[key] = value;
  }
  return env;
}

export interface StartOptions {
  command: string;
  /** Arguments the kit adds after the command (already plain words; quoted here). */
  append?: string[];
  env: Record<string, string>;
  /**
   * Bytes are written and then stdin is closed; "pipe" keeps it open (the kit writes or never
   * closes).
   */
  stdin?: "ignore" | "pipe" | Uint8Array;
  stdout?: "ignore" | "pipe";
  /** Start reading its stdout only after this long (a slow reader). */
  stdoutDelayMs?: number;
  cwd?: string;
}

export class ProgramUnderTest {
  readonly child: Subprocess<"pipe" | "ignore", "pipe" | "ignore", "pipe">;
  readonly commandLine: string;
  #log: string[] = [];
  #logBytes = 0;
  #stdout: Uint8Array[] = [];
  #stdoutDone: Promise<void> = Promise.resolve();
  exitCode: number | null = null;
  signal: NodeJS.Signals | number | null = null;
  readonly exited: Promise<number>;

  constructor(options: StartOptions) {
    this.commandLine = [options.command, ...(options.append ?? []).map(shellQuote)].join(" ");
    const child = Bun.spawn(["/bin/sh", "-c", `exec ${this.commandLine}`], {
      env: options.env,
      cwd: options.cwd,
      stdin: options.stdin ?? "ignore",
      stdout: options.stdout ?? "ignore",
      stderr: "pipe",
      // Its own process group, so the end of a case stops whatever it started too.
      detached: true,
    }) as Subprocess<"pipe" | "ignore", "pipe" | "ignore", "pipe">;
    this.child = child;
    const decoder = new TextDecoder();
    void (async () => {
      try {
        for await (const chunk of child.stderr as ReadableStream<Uint8Array>) {
          // Keep the last ~64 KiB: enough to explain a failure.
          this.#log.push(decoder.decode(chunk));
          this.#logBytes += chunk.length;
          while (this.#logBytes > 65536 && this.#log.length > 1)
            this.#logBytes -= this.#log.shift()!.length;
        }
      } catch {
        // The child's stderr broke off: the log keeps what was read.
      }
    })();
    if (options.stdout === "pipe") {
      this.#stdoutDone = (async () => {
        if (options.stdoutDelayMs) await Bun.sleep(options.stdoutDelayMs);
        try {
          for await (const chunk of child.stdout as ReadableStream<Uint8Array>)
            this.#stdout.push(chunk);
        } catch {
          // The child's stdout broke off: the case sees what was read.
        }
      })();
    }
    this.exited = child.exited.then((code) => {
      this.exitCode = code;
      this.signal = child.signalCode ?? null;
      return code;
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitCode === null;
  }

  /** What the program wrote to stderr (the tail). */
  log(): string {
    return this.#log.join("");
  }

  /** Its stdout so far (when started with stdout "pipe"); waits for EOF when `complete`. */
  async stdout(complete = false): Promise<Uint8Array> {
    if (complete) await this.#stdoutDone;
    const total = this.#stdout.reduce((sum, chunk) => sum + chunk.length, 0);
    const out = new Uint8Array(total);
    let offset = 0;
    for (const chunk of this.#stdout) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }

  /** `exit N`, `killed by SIGX`, or `running`. */
  status(): string {
    if (this.exitCode === null) return "running";
    return this.signal ? `killed by ${this.signal}` : `exit ${this.exitCode}`;
  }

  /** Waits up to `ms` for the program to exit; true if it did. */
  async waitExit(ms: number): Promise<boolean> {
    if (this.exitCode !== null) return true;
    return Promise.race([this.exited.then(() => true), Bun.sleep(ms).then(() => false)]);
  }

  #signalGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      try {
        this.child.kill(signal);
      } catch {
        // Already gone.
      }
    }
  }

  /** SIGTERM to its process group, then SIGKILL after `graceMs`; leftovers of the group too. */
  async stop(graceMs = 1000): Promise<void> {
    if (this.exitCode === null) {
      this.#signalGroup("SIGTERM");
      if (!(await this.waitExit(graceMs))) {
        this.#signalGroup("SIGKILL");
        await this.waitExit(2000);
      }
    }
    // Services and helpers it left behind in its group.
    this.#signalGroup("SIGKILL");
  }
}
