// Finding the file behind a service descriptor in QREXEC_SERVICE_PATH (§5.3), as
// `find_qrexec_service` and `find_file` do. Pure apart from lstat/stat/readlink/access: nothing
// is opened, connected or run here.

import { accessSync, constants, lstatSync, readlinkSync, statSync, type Stats } from "node:fs";
import { DEFAULT_SERVICE_PATH, NAME_MAX } from "../protocol/constants.ts";

export type ServiceLocation =
  | { kind: "executable"; path: string }
  | { kind: "socket"; path: string }
  /** A symlink to /dev/tcp…: connect to host:port. `family` 6 when the host is IPv6. */
  | { kind: "tcp"; host: string; port: number; family: 4 | 6; path: string }
  /** Exit 127. */
  | { kind: "not-found" }
  /** Exit 125. */
  | { kind: "problem"; reason: string };

export function defaultServicePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.QREXEC_SERVICE_PATH ?? DEFAULT_SERVICE_PATH;
}

// ---------------------------------------------------------------------------------------------
// One name across every directory of a search path (`find_file`).

export type FoundFile =
  /** `stats` follows symlinks, except for a /dev/tcp link, which is reported in `tcpLink`. */
  | { kind: "found"; path: string; stats: Stats; tcpLink: string | null }
  | { kind: "absent" }
  | { kind: "error"; reason: string };

const TCP_DEVICE = "/dev/tcp";

function isTcpLink(target: string): boolean {
  return target === TCP_DEVICE || target.startsWith(`${TCP_DEVICE}/`);
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The first `DIR/name` that exists, in path order. ENOENT (also a symlink whose target is missing)
 * moves on; any other error stops the search, so a broken entry cannot be skipped to reach a
 * service further down the path. A name over NAME_MAX bytes is absent. Empty path entries are
 * skipped.
 */
export function findFile(searchPath: string, name: string): FoundFile {
  if (Buffer.byteLength(name, "utf8") > NAME_MAX) return { kind: "absent" };
  if (name.includes("\0"))
    return { kind: "error", reason: `name contains NUL: ${JSON.stringify(name)}` };
  for (const directory of searchPath.split(":")) {
    if (directory === "") continue;
    const path = `${directory}/${name}`;
    let stats: Stats | undefined;
    try {
      // Absent is the common case (a `svc+` tried first, configs most services lack), and an
      // error object per absent name costs more than the lstat itself.
      stats = lstatSync(path, { throwIfNoEntry: false });
    } catch (error) {
      return { kind: "error", reason: `cannot stat ${path}: ${describe(error)}` };
    }
    if (stats === undefined) continue;
    if (!stats.isSymbolicLink()) return { kind: "found", path, stats, tcpLink: null };
    try {
      const target = readlinkSync(path);
      if (isTcpLink(target)) return { kind: "found", path, stats, tcpLink: target };
      return { kind: "found", path, stats: statSync(path), tcpLink: null };
    } catch (error) {
      if (errorCode(error) === "ENOENT") continue;
      return { kind: "error", reason: `cannot follow ${path}: ${describe(error)}` };
    }
  }
  return { kind: "absent" };
}

// ---------------------------------------------------------------------------------------------
// Service lookup.

/** `svc+arg` in every directory, then `svc` in every directory (not per directory, §5.3). */
function findServiceFile(
  searchPath: string,
  serviceDescriptor: string,
  serviceName: string,
): FoundFile {
  const specific = findFile(searchPath, serviceDescriptor);
  return specific.kind === "absent" ? findFile(searchPath, serviceName) : specific;
}

/**
 * The service for `descriptor` ("svc+arg", or "svc", which is looked up as "svc+" first).
 * `searchPath` is colon-separated.
 */
export function findService(
  descriptor: string,
  searchPath: string = defaultServicePath(),
): ServiceLocation {
  const serviceDescriptor = descriptor.includes("+") ? descriptor : `${descriptor}+`;
  const plus = serviceDescriptor.indexOf("+");
  const serviceName = serviceDescriptor.slice(0, plus);
  const argument = serviceDescriptor.slice(plus + 1);
  if (serviceName === "") return { kind: "problem", reason: "empty service name" };

  const found = findServiceFile(searchPath, serviceDescriptor, serviceName);
  if (found.kind === "absent") return { kind: "not-found" };
  if (found.kind === "error") return { kind: "problem", reason: found.reason };

  if (found.stats.isSocket()) return { kind: "socket", path: found.path };
  if (found.tcpLink !== null) return tcpService(found.path, found.tcpLink, argument);
  // access(X_OK) succeeds on a directory, which exec would then fail on with EACCES: 125 either
  // way.
  if (found.stats.isDirectory()) return { kind: "problem", reason: `${found.path} is a directory` };
  try {
    accessSync(found.path, constants.X_OK);
  } catch {
    return { kind: "problem", reason: `${found.path} is neither executable nor a socket` };
  }
  return { kind: "executable", path: found.path };
}

// ---------------------------------------------------------------------------------------------
// TCP services: a symlink to /dev/tcp, /dev/tcp/HOST or /dev/tcp/HOST/PORT.

function tcpService(path: string, linkTarget: string, argument: string): ServiceLocation {
  const endpoint = tcpEndpoint(linkTarget.slice(TCP_DEVICE.length), argument);
  if ("problem" in endpoint)
    return { kind: "problem", reason: `${path} -> ${linkTarget}: ${endpoint.problem}` };
  if (endpoint.host === "")
    return { kind: "problem", reason: `${path} -> ${linkTarget}: empty host` };
  // Loaded here, not at the top: node:net costs every Bun process that imports this file ~8 ms
  // to start, and only a /dev/tcp service needs it.
  const family = (require("node:net") as typeof import("node:net")).isIP(endpoint.host);
  if (family !== 4 && family !== 6) {
    return {
      kind: "problem",
      reason: `${path} -> ${linkTarget}: host '${endpoint.host}' is not a numeric address`,
    };
  }
  if (!/^[1-9][0-9]{0,4}$/.test(endpoint.port) || Number(endpoint.port) > 65535) {
    return {
      kind: "problem",
      reason: `${path} -> ${linkTarget}: port '${endpoint.port}' is not 1..65535`,
    };
  }
  return { kind: "tcp", host: endpoint.host, port: Number(endpoint.port), family, path };
}

/** `rest` is the link target after "/dev/tcp": "", "/HOST" or "/HOST/PORT". */
function tcpEndpoint(
  rest: string,
  argument: string,
): { host: string; port: string } | { problem: string } {
  if (rest === "") {
    // The whole endpoint is in the argument. '+' stands for ':' because the daemon turns ':' in a
    // service name into '_', which is why '_' itself cannot be part of a valid argument.
    if (argument.includes("_")) return { problem: `argument '${argument}' contains '_'` };
    const lastPlus = argument.lastIndexOf("+");
    if (lastPlus === -1) return { problem: `argument '${argument}' is not HOST+PORT` };
    return {
      host: argument.slice(0, lastPlus).replaceAll("+", ":"),
      port: argument.slice(lastPlus + 1),
    };
  }
  const hostAndPort = rest.slice(1);
  const slash = hostAndPort.indexOf("/");
  const host = slash === -1 ? hostAndPort : hostAndPort.slice(0, slash);
  if (slash === -1) return { host, port: argument };
  if (argument !== "")
    return { problem: `the link fixes the port, but the call has argument '${argument}'` };
  return { host, port: hostAndPort.slice(slash + 1) };
}
