// Lab domains as real boundaries (docs/lab.md, "Isolation"). Under `isolation = "namespaces"`
// each VM domain's agent runs as pid 1's child in its own mount, PID, IPC, UTS and network
// namespaces, built by libexec/qrx-domain-ns: as root, with its own host uid (DOMAIN_UID_BASE + id)
// and no capabilities; unprivileged, inside a user namespace of its own. dom0 stays on the host.
// This module decides whether the kernel allows it, wraps a domain's command, and enters a
// running domain for `qrx run`.

import {
  chownSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
} from "node:fs";
import { join } from "node:path";
import { type DomainProcesses, domainUid, privileged } from "./enter.ts";
import { LIBEXEC_DIR, PROJECT_DIR } from "../install-paths.ts";
import type { LabLayout } from "./layout.ts";

export { type DomainProcesses, domainUid, enterArgv, privileged } from "./enter.ts";

export const ISOLATION_MODES = ["namespaces", "none"] as const;
export type IsolationMode = (typeof ISOLATION_MODES)[number];

const NS_HELPER = join(LIBEXEC_DIR, "qrx-domain-ns");
/** Programs the namespaces need besides sh: util-linux and iproute2. */
const TOOLS = ["unshare", "nsenter", "setpriv", "pivot_root", "mount", "umount", "hostname", "ip"];
const PROBE_TIMEOUT_MS = 20_000;

/** Everything isolation keeps on the host (libexec/qrx-domain-ns knows the same paths). */
export function isolationDir(layout: LabLayout): string {
  return join(layout.dir, "isolation");
}

/**
 * Domain `id`'s vchan rendezvous directory on the host; inside the domain it is D/vchan. dom0's
 * is D/vchan itself, so dom0's tools need nothing but the environment they always had.
 */
export function domainVchanDir(layout: LabLayout, id: number): string {
  return id === 0 ? layout.vchanDir : join(isolationDir(layout), "vchan", String(id));
}

/** Mount points of the domains' root directories (mounted only inside their namespaces). */
export function rootsDir(layout: LabLayout): string {
  return join(isolationDir(layout), "roots");
}

function unshareArgs(): string[] {
  const common = ["--mount", "--pid", "--fork", "--ipc", "--uts", "--net", "--kill-child"];
  common.push("--propagation", "private");
  return ["unshare", ...(privileged() ? [] : ["--user", "--map-root-user"]), ...common];
}

/** `argv` run as isolated domain `name` (id `id`): the supervisor starts this instead. */
export function isolatedArgv(
  layout: LabLayout,
  domain: { name: string; id: number },
  argv: string[],
): string[] {
  const { name, id } = domain;
  const helper = [NS_HELPER, layout.dir, name, String(id), String(domainUid(id)), PROJECT_DIR];
  return [...unshareArgs(), "--", ...helper, "--", ...argv];
}

/** Gives a domain's directories to its uid (as root) before it starts: its home is its own. */
export function prepareDomainDirs(layout: LabLayout, domain: { name: string; id: number }): void {
  const vchan = domainVchanDir(layout, domain.id);
  rmSync(vchan, { recursive: true, force: true });
  mkdirSync(vchan, { recursive: true, mode: 0o755 });
  mkdirSync(rootsDir(layout), { recursive: true });
  const uid = domainUid(domain.id);
  if (uid !== 0) chownTree(layout.domainDir(domain.name), uid);
  if (uid !== 0) chownSync(vchan, uid, uid);
}

/** Never follows a link the domain left: only its own tree changes hands. */
function chownTree(path: string, uid: number): void {
  lchownSync(path, uid, uid);
  if (!lstatSync(path).isDirectory()) return;
  for (const entry of readdirSync(path)) chownTree(join(path, entry), uid);
}

/**
 * Null when isolated domains can run here; otherwise what is missing, in words a user can act
 * on. Runs the real helper once on a scratch domain, so the answer is the kernel's own.
 */
export function probeIsolation(layout: LabLayout): string | null {
  const path = process.env.PATH ?? "/usr/bin:/bin";
  const found = (tool: string) => path.split(":").some((dir) => existsSync(join(dir, tool)));
  const missing = TOOLS.filter((tool) => !found(tool));
  if (missing.length > 0) return `missing programs: ${missing.join(", ")} (util-linux, iproute2)`;
  const probe = { name: "isolation-probe", id: 1 };
  const scratch = layout.domainDir(probe.name);
  mkdirSync(join(scratch, "home"), { recursive: true });
  mkdirSync(layout.bunCacheDir, { recursive: true });
  try {
    prepareDomainDirs(layout, probe);
    const result = Bun.spawnSync(isolatedArgv(layout, probe, ["true"]), {
      cwd: join(scratch, "home"),
      stdio: ["ignore", "ignore", "pipe"],
      timeout: PROBE_TIMEOUT_MS,
    });
    if (result.exitCode === 0) return null;
    return explainProbeFailure(result.stderr.toString().trim());
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    rmSync(domainVchanDir(layout, probe.id), { recursive: true, force: true });
    rmSync(join(rootsDir(layout), probe.name), { recursive: true, force: true });
  }
}

function explainProbeFailure(stderr: string): string {
  const why = stderr.split("\n").slice(-3).join("; ") || "no message";
  if (privileged()) return `the kernel refused new namespaces to root (${why})`;
  const limits: string[] = [];
  const read = (file: string) => {
    try {
      return readFileSync(file, "utf8").trim();
    } catch {
      return null;
    }
  };
  if (read("/proc/sys/user/max_user_namespaces") === "0") {
    limits.push("user.max_user_namespaces is 0");
  }
  if (read("/proc/sys/kernel/unprivileged_userns_clone") === "0") {
    limits.push("kernel.unprivileged_userns_clone is 0");
  }
  if (read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") === "1") {
    limits.push(
      "AppArmor restricts unprivileged user namespaces " +
        "(kernel.apparmor_restrict_unprivileged_userns=1)",
    );
  }
  const cause =
    limits.length > 0 ? limits.join(", ") : "unprivileged user namespaces are not available";
  return `${cause} (${why})`;
}

/** The processes `unsharePid` (what the supervisor started) runs the domain as. */
export function domainProcesses(unsharePid: number): DomainProcesses | null {
  const init = childOf(unsharePid);
  const program = init === null ? null : childOf(init);
  return init === null || program === null ? null : { init, program };
}

function childOf(parent: number): number | null {
  try {
    return listedChildOf(parent);
  } catch {
    return scannedChildOf(parent);
  }
}

/** The kernel's own list of each thread's children (CONFIG_PROC_CHILDREN): a few reads, where a
 * scan of /proc reads every process's stat (~4 ms, paid by each `qrx run` in a domain). */
function listedChildOf(parent: number): number | null {
  for (const thread of readdirSync(`/proc/${parent}/task`)) {
    const first = readFileSync(`/proc/${parent}/task/${thread}/children`, "utf8").split(" ")[0];
    if (first) return Number(first);
  }
  return null;
}

function scannedChildOf(parent: number): number | null {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // Fields after the command (which may hold spaces and parentheses): state, ppid, ...
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === parent) return Number(entry);
    } catch {
      // The process exited while we looked: not the child.
    }
  }
  return null;
}
