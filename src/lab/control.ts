// What the `qrx lab|vm|run` commands do, as functions: bring a lab up (start its admin service
// detached and wait until it is ready), take it down, read its status and logs, manage domains,
// and run a command as one of its domains. Every failure is a LabError that says what to do.

import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  readSync,
} from "node:fs";
import { join } from "node:path";
import type { LabStatus } from "./admin.ts";
import { askModeProblem, DEFAULT_LAB_FILE, loadLabConfig, type LabConfig } from "./config.ts";
import { callAdmin, LabError, noLab } from "./lab-dir.ts";
import { type IsolationMode, isolationDir, probeIsolation } from "./isolation.ts";
import type { LabLayout } from "./layout.ts";
import { entryCommand } from "../install-paths.ts";

const UP_TIMEOUT_MS = 60_000;
const DOWN_TIMEOUT_MS = 20_000;

/** The admin service's pid when it is alive (and really ours: pids get reused). */
export function adminPid(layout: LabLayout): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(layout.pidFile, "utf8").trim());
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("qrx-admin") ? pid : null;
  } catch {
    return null;
  }
}

/** One admin call, once the admin's pid says the lab is up; errors become LabErrors. */
export async function adminCall(
  layout: LabLayout,
  method: string,
  dest = "dom0",
  payload?: string,
): Promise<string> {
  if (adminPid(layout) === null) throw noLab(layout);
  return callAdmin(layout, method, dest, payload);
}

export async function labStatus(layout: LabLayout): Promise<LabStatus> {
  return JSON.parse(await adminCall(layout, "qrx.lab.Status")) as LabStatus;
}

/** Kills what a lab whose admin died left behind (its process group) and its runtime files. */
function cleanUpAfterCrash(layout: LabLayout): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(layout.pidFile, "utf8").trim());
  } catch {
    return false;
  }
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // The process group is already gone.
  }
  for (const path of [layout.pidFile, layout.adminSocket, layout.policySocket])
    rmSync(path, { force: true });
  for (const dir of [layout.socketDir, layout.vchanDir, layout.asksDir, isolationDir(layout)]) {
    rmSync(dir, { recursive: true, force: true });
  }
  return true;
}

function tail(path: string, lines: number): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

export interface UpOptions {
  config?: string;
  /** --ask: overrides the definition's `ask`. */
  ask?: string;
  /** --allow-broken-policy: come up with a policy that has errors (it denies every call). */
  allowBrokenPolicy?: boolean;
  /** Overrides the lab file's `isolation`. */
  isolation?: IsolationMode;
  onProgress?: (message: string) => void;
}

/**
 * sun_path holds 107 bytes and a NUL; the lab's longest socket is a 31-character domain's agent
 * socket.
 */
const SOCKET_PATH_MAX = 107;
const LONGEST_SOCKET_SUFFIX = `/domains/${"x".repeat(31)}/qrexec-agent.sock`.length;

/**
 * The policy the lab will have (its own file, written now as the admin service would, beside the
 * user's files in policy.d) must load without errors: a broken policy denies every call, which
 * looks like every call being refused for no reason.
 */
async function checkPolicy(layout: LabLayout, config: LabConfig, options: UpOptions) {
  // Loaded here: every other qrx command (qrx run above all) starts faster without the policy.
  const { loadPolicy } = await import("../policy/loader.ts");
  const { formatPolicyError } = await import("../policy/errors.ts");
  mkdirSync(layout.policyDir, { recursive: true });
  if (config.policy !== null) writeFileSync(join(layout.policyDir, "50-lab.policy"), config.policy);
  const { errors } = loadPolicy(layout.policyDir);
  if (errors.length === 0) return;
  const list = errors.map((error) => `  ${formatPolicyError(error)}`).join("\n");
  if (!options.allowBrokenPolicy) {
    throw new LabError(
      `the lab's policy has errors, so the lab was not brought up:\n${list}\n` +
        `fix them (qrx policy lint ${layout.policyDir}), or ` +
        `bring the lab up anyway with --allow-broken-policy`,
    );
  }
  options.onProgress?.(
    `WARNING: --allow-broken-policy: the lab's policy has ` +
      `errors and DENIES EVERY CALL until they are fixed:\n${list}`,
  );
}

export async function labUp(layout: LabLayout, options: UpOptions = {}): Promise<LabStatus> {
  const room = SOCKET_PATH_MAX - LONGEST_SOCKET_SUFFIX;
  if (Buffer.byteLength(layout.dir) > room) {
    throw new LabError(
      `the state directory ${layout.dir} is too long for unix socket paths ` +
        `(${Buffer.byteLength(layout.dir)} bytes, at most ${room}): choose a shorter --dir`,
    );
  }
  const running = adminPid(layout);
  if (running !== null)
    throw new LabError(
      `a lab is already running in ${layout.dir} (admin pid ` +
        `${running}): qrx lab status shows it, qrx lab down stops it`,
    );
  if (cleanUpAfterCrash(layout))
    options.onProgress?.(`cleaned up after a lab in ${layout.dir} that did not shut down`);
  let config: LabConfig;
  try {
    config = loadLabConfig(options.config ?? DEFAULT_LAB_FILE);
  } catch (error) {
    throw new LabError(error instanceof Error ? error.message : String(error));
  }
  if (options.ask !== undefined) {
    const problem = askModeProblem(options.ask);
    if (problem !== null) throw new LabError(`--ask: ${problem}`, 2);
    config.ask = options.ask;
  }
  if (options.isolation !== undefined) config.isolation = options.isolation;
  await checkPolicy(layout, config, options);
  mkdirSync(layout.logDir, { recursive: true });
  checkIsolation(layout, config);
  writeFileSync(layout.configFile, `${JSON.stringify(config, null, 2)}\n`);
  const logPath = layout.log("admin");
  const log = openSync(logPath, "a");
  const { cmd, argv0 } = entryCommand("qrx-admin", [layout.dir]);
  const admin = Bun.spawn(cmd, {
    argv0,
    stdio: ["ignore", log, log],
    detached: true,
    env: process.env,
  });
  closeSync(log);
  admin.unref();
  const deadline = Date.now() + UP_TIMEOUT_MS;
  for (;;) {
    await Bun.sleep(20);
    if (admin.exitCode !== null || admin.signalCode !== null) {
      throw new LabError(
        `the lab did not come up (admin exited with ` +
          `${admin.exitCode ?? admin.signalCode}); from ${logPath}:\n${tail(logPath, 15)}`,
      );
    }
    if (Date.now() > deadline) {
      admin.kill("SIGTERM");
      throw new LabError(
        `the lab did not come up within ${UP_TIMEOUT_MS / 1000} s; from ${logPath}:\n` +
          `${tail(logPath, 15)}`,
      );
    }
    if (!existsSync(layout.adminSocket) || adminPid(layout) === null) continue;
    try {
      const status = await labStatus(layout);
      if (status.ready) return status;
    } catch {
      // The admin service does not answer yet: poll again until the deadline.
    }
  }
}

/** Isolation the lab asks for and this machine cannot give is an error, never a silent fallback. */
function checkIsolation(layout: LabLayout, config: LabConfig): void {
  if (config.isolation === "none") return;
  const off =
    '--isolation none (or isolation = "none" in the lab file) runs the domains unisolated';
  if (config.transport === "socket") {
    throw new LabError(
      `transport "socket" cannot be isolated: upstream's vchan-socket lets any process ` +
        `that can reach a socket claim any domain id; use transport = "shm", or ${off}`,
    );
  }
  const missing = probeIsolation(layout);
  if (missing !== null) throw new LabError(`cannot isolate the lab's domains: ${missing}; ${off}`);
}

export async function labDown(layout: LabLayout): Promise<void> {
  const pid = adminPid(layout);
  if (pid === null) {
    const crashed = cleanUpAfterCrash(layout);
    throw new LabError(
      `no lab running in ` +
        `${layout.dir}${crashed ? " (cleaned up after one that did not shut down)" : ""}`,
    );
  }
  try {
    await adminCall(layout, "qrx.lab.Shutdown");
  } catch {
    process.kill(pid, "SIGTERM");
  }
  const deadline = Date.now() + DOWN_TIMEOUT_MS;
  while (adminPid(layout) !== null && existsSync(`/proc/${pid}`)) {
    if (Date.now() > deadline) {
      cleanUpAfterCrash(layout);
      throw new LabError(
        `the lab in ${layout.dir} did not stop within ` +
          `${DOWN_TIMEOUT_MS / 1000} s; its processes were killed`,
      );
    }
    await Bun.sleep(20);
  }
}

// ---------------------------------------------------------------- status

export function formatDuration(ms: number): string {
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((cell, index) =>
    Math.max(cell.length, ...rows.map((row) => row[index]?.length ?? 0)),
  );
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, index) => cell.padEnd(widths[index] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatStatus(status: LabStatus, now = Date.now()): string {
  const head = [
    `lab in ${status.dir}, up ${formatDuration(now - status.startedAt)}, ` +
      `transport ${status.transport}, isolation ${status.isolation ?? "none"}`,
    `config ${status.config}`,
    `admin pid ${status.adminPid}, policy daemon pid ${status.policyPid ?? "-"}, ` +
      `DisposableVMs created: ${status.disposablesCreated}`,
    "",
  ];
  const rows = status.domains.map((domain) => [
    domain.name,
    String(domain.id),
    domain.template
      ? `DispVM(${domain.template})`
      : domain.templateForDispvms
        ? "DispVMTemplate"
        : domain.klass,
    domain.state,
    domain.agentPid === null ? "-" : String(domain.agentPid),
    domain.daemonPid === null ? "-" : String(domain.daemonPid),
    domain.runningSince > 0 && domain.state === "Running"
      ? formatDuration(now - domain.runningSince)
      : "-",
    String(domain.calls),
    String(domain.restarts),
    domain.isolation ?? "none",
  ]);
  return (
    head.join("\n") +
    formatTable(
      [
        "DOMAIN",
        "ID",
        "TYPE",
        "STATE",
        "AGENT",
        "DAEMON",
        "UPTIME",
        "CALLS",
        "RESTARTS",
        "ISOLATION",
      ],
      rows,
    )
  );
}

// ---------------------------------------------------------------- logs

/** The log files of `domain` (dom0: the admin service and the policy daemon), or of everything. */
export function logFiles(layout: LabLayout, domain?: string): string[] {
  if (!existsSync(layout.logDir))
    throw new LabError(`no lab logs in ${layout.dir}: run qrx lab up first`);
  const all = readdirSync(layout.logDir)
    .filter((name) => name.endsWith(".log"))
    .sort();
  if (domain === undefined) return all.map((name) => join(layout.logDir, name));
  const wanted =
    domain === "dom0"
      ? ["admin.log", "policy.log"]
      : [`${domain}.agent.log`, `${domain}.daemon.log`];
  const found = wanted.filter((name) => all.includes(name));
  if (found.length === 0) {
    const domains = [
      ...new Set(
        all
          .map((name) => name.split(".")[0])
          .filter((name) => name !== "admin" && name !== "policy"),
      ),
    ];
    throw new LabError(
      `no logs for '${domain}' in ${layout.logDir} (domains with ` +
        `logs: dom0${domains.map((name) => `, ${name}`).join("")})`,
    );
  }
  return found.map((name) => join(layout.logDir, name));
}

/** Prints the files (headed like tail when there are several), then follows them if asked. */
export async function printLogs(
  files: string[],
  follow: boolean,
  write: (text: string) => void = (text) => process.stdout.write(text),
): Promise<void> {
  const offsets = new Map<string, number>();
  let last: string | null = null;
  const emit = (file: string, text: string) => {
    if (text === "") return;
    if (files.length > 1 && last !== file) write(`${last === null ? "" : "\n"}==> ${file} <==\n`);
    last = file;
    write(text);
  };
  const readNew = (file: string) => {
    let size: number;
    try {
      size = statSync(file).size;
    } catch {
      return;
    }
    const from = offsets.get(file) ?? 0;
    if (size <= from) return;
    const buffer = Buffer.alloc(size - from);
    const fd = openSync(file, "r");
    try {
      readSync(fd, buffer, 0, buffer.length, from);
    } finally {
      closeSync(fd);
    }
    offsets.set(file, size);
    emit(file, buffer.toString("utf8"));
  };
  for (const file of files) readNew(file);
  while (follow) {
    await Bun.sleep(200);
    for (const file of files) readNew(file);
  }
}

export { dirOption, LabError, labLayout } from "./lab-dir.ts";
export { domainCommand, runInDomain } from "./run.ts";
