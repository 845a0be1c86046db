// Entering a running isolated domain (docs/lab.md, "Isolation"): apart from isolation.ts so that
// `qrx run` builds the command without loading node:fs (1.3-3 ms of Bun's builtins) before it
// starts it.

/** Root on the host: domains get host uids of their own; otherwise user namespaces do it. */
export function privileged(): boolean {
  return process.getuid?.() === 0;
}

/** The host uid an isolated domain runs as (0: none of its own, the unprivileged case). */
export function domainUid(id: number): number {
  if (!privileged()) return 0;
  // Loaded here: constants.ts brings the ABI tables, ~0.2 ms of every `qrx run`'s start.
  const { DOMAIN_UID_BASE, DOMAIN_UID_COUNT } =
    require("../constants.ts") as typeof import("../constants.ts");
  if (id <= 0 || id >= DOMAIN_UID_COUNT) throw new Error(`domain id ${id} has no lab uid`);
  return DOMAIN_UID_BASE + id;
}

/** The pids (host's view) of a domain's init (libexec/qrx-domain-ns) and of its program. */
export interface DomainProcesses {
  init: number;
  program: number;
}

/** `pid` as its own PID namespace numbers it (the last NSpid field). */
function innerPid(pid: number): number | null {
  // Loaded here: only an unprivileged lab needs it, and `qrx run` starts sooner without node:fs.
  const { readFileSync } = require("node:fs") as typeof import("node:fs");
  const line = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return line === undefined ? null : Number(line.trim().split(/\s+/).at(-1));
}

/** `argv` entered into domain `id`'s namespaces: the same ones, uid and locks as its program. */
export function enterArgv(domain: DomainProcesses, id: number, argv: string[]): string[] {
  const namespaces = ["--mount", "--pid", "--ipc", "--uts", "--net", "--root", "--wd"];
  if (!privileged()) {
    // Unprivileged, the program's namespaces belong to init's user namespace and its own (a
    // nested one) only locks the mounts: enter init's, then, from inside, the program's.
    const inner = innerPid(domain.program);
    if (inner === null) throw new Error(`no NSpid for pid ${domain.program}`);
    const user = ["--user", "--preserve-credentials"];
    const nested = ["nsenter", `--target=${inner}`, ...user, "--mount", "--root", "--wd", "--"];
    return ["nsenter", `--target=${domain.init}`, ...user, ...namespaces, "--", ...nested, ...argv];
  }
  const target = domain.program;
  const uid = domainUid(id);
  const drop = ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups"];
  drop.push("--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--");
  return ["nsenter", `--target=${target}`, ...namespaces, "--", ...drop, ...argv];
}
