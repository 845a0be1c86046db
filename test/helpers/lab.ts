// Labs for integration tests, driven exactly as a user would: through bin/qrx. Each lab has its
// own --dir, and HOME / XDG_RUNTIME_DIR point at an empty directory so a test can check that
// nothing was written outside --dir.

import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LabStatus } from "../../src/lab/admin.ts";
import { tempDir } from "./paths.ts";

export const QRX = join(import.meta.dir, "..", "..", "bin", "qrx");

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class TestLab {
  readonly root: { path: string; remove: () => void };
  readonly dir: string;
  /** HOME and XDG_RUNTIME_DIR of every qrx process: must stay empty. */
  readonly elsewhere: string;

  /**
   * `base`: where the lab's directory goes (default the temp dir; /dev/shm for big copies).
   * `program`: the qrx to drive (an installed or compiled one; default the checkout's bin/qrx).
   */
  constructor(
    base?: string,
    readonly program: string = QRX,
  ) {
    this.root = tempDir("qrx-lab-", base);
    this.dir = join(this.root.path, "state");
    this.elsewhere = join(this.root.path, "elsewhere");
    mkdirSync(this.elsewhere);
  }

  env(extra: Record<string, string> = {}): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (
        value !== undefined &&
        !/^(QRX_(DIR|VCHAN|VCHAN_DIR|AGENT_SOCKET|SOCKET_DIR|DOMAIN_NAME)|QREXEC_|VCHAN_)/.test(key)
      )
        env[key] = value;
    }
    // Bun's own transpiler cache would land in HOME: not lab state, so it goes beside.
    return {
      ...env,
      HOME: this.elsewhere,
      XDG_RUNTIME_DIR: this.elsewhere,
      BUN_RUNTIME_TRANSPILER_CACHE_PATH: join(this.root.path, "bun-cache"),
      ...extra,
    };
  }

  /** `qrx ARGS` (with --dir appended where `withDir`), stdin from `input`. */
  async qrx(
    args: string[],
    options: { input?: string; withDir?: boolean; env?: Record<string, string> } = {},
  ): Promise<RunResult> {
    const argv = [this.program, ...args, ...(options.withDir === false ? [] : ["--dir", this.dir])];
    const child = Bun.spawn(argv, {
      env: this.env(options.env),
      stdin: new TextEncoder().encode(options.input ?? ""),
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

  /** `qrx run DOMAIN -- ARGV` in this lab (QRX_DIR names it, as a user's shell would). */
  run(domain: string, argv: string[], input = ""): Promise<RunResult> {
    return this.qrx(["run", domain, "--", ...argv], {
      input,
      withDir: false,
      env: { QRX_DIR: this.dir },
    });
  }

  /** A lab definition file in the test's directory. */
  config(text: string): string {
    const file = join(this.root.path, "lab.toml");
    writeFileSync(file, text);
    return file;
  }

  /**
   * Isolated unless asked, as `qrx lab up` is: tests then run what a user gets. A test that
   * writes into a domain's files from the host gives them to the domain's uid (the host's root
   * owns what it writes).
   */
  async up(config?: string, isolation: "namespaces" | "none" = "namespaces"): Promise<void> {
    const result = await this.qrx([
      "lab",
      "up",
      "--isolation",
      isolation,
      ...(config ? ["--config", config] : []),
    ]);
    if (result.code !== 0)
      throw new Error(`qrx lab up failed (${result.code}):\n${result.stdout}${result.stderr}`);
  }

  async down(): Promise<void> {
    const result = await this.qrx(["lab", "down"]);
    if (result.code !== 0)
      throw new Error(`qrx lab down failed (${result.code}):\n${result.stdout}${result.stderr}`);
  }

  async status(): Promise<LabStatus> {
    const result = await this.qrx(["lab", "status", "--json"]);
    if (result.code !== 0) throw new Error(`qrx lab status failed: ${result.stderr}`);
    return JSON.parse(result.stdout) as LabStatus;
  }

  /** Brings the lab down if it is up, and removes every directory. */
  async remove(): Promise<void> {
    await this.qrx(["lab", "down"]);
    this.root.remove();
  }
}

/** Every process whose command line mentions `text` (our lab's dir), as "pid cmdline". */
export function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = require("node:fs")
        .readFileSync(`/proc/${entry}/cmdline`, "utf8")
        .replaceAll("\0", " ");
      const environ = require("node:fs").readFileSync(`/proc/${entry}/environ`, "utf8");
      if (cmdline.includes(text) || environ.includes(text)) found.push(`${entry} ${cmdline}`);
    } catch {
      // The process exited while we looked, or is not ours to read.
    }
  }
  return found;
}

/** Every unix socket (and other non-regular, non-directory entry) under `dir`. */
export function socketsUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (path: string) => {
    let entries;
    try {
      entries = readdirSync(path, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isSocket() || entry.isSymbolicLink()) out.push(full);
    }
  };
  walk(dir);
  return out;
}
