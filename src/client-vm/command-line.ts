// qrexec-client-vm's command line (§10): the fast parser for the common forms, and the call it
// asks for. Shared by the Bun CLI (src/cli/qrexec-client-vm.ts) and the agent's client host
// (src/agent/client-host.ts), which must read a command line exactly as the CLI would.
import { fstatSync } from "node:fs";
import { ExitError } from "../call/exit-error.ts";
import { parsePeerProfileName, peerProfile, type PeerProfile } from "../protocol/peer-profile.ts";
import { ownDomain } from "../own-domain.ts";
import { QREXEC_EXIT_FATAL, QREXEC_EXIT_USAGE } from "../protocol/exit.ts";
import type { ClientVmCall } from "./client-vm.ts";

const INT_MAX = 0x7fff_ffff;

/**
 * C `strtoul(text, &end, 0)` with upstream's checks: a leading digit, nothing after, <= INT_MAX.
 */
export function parseBufferSize(text: string): number | null {
  if (!/^[0-9]/.test(text)) return null;
  const match = /^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!match) return null;
  const value =
    text.startsWith("0x") || text.startsWith("0X")
      ? Number.parseInt(text.slice(2), 16)
      : text.length > 1 && text.startsWith("0")
        ? Number.parseInt(text, 8)
        : Number(text);
  return Number.isSafeInteger(value) && value <= INT_MAX ? value : null;
}

export interface ClientVmOptions {
  /** Absent: the profile's default (131072; 1024 for mirage). */
  bufferSize?: string;
  peerProfile?: string;
  filterEscapeCharsStdout?: boolean;
  filterEscapeCharsStderr?: boolean;
  agentSocket: string;
  prefixData?: string;
  sourceQube?: string;
  useStdinSocket?: boolean;
}

export interface ClientVmCommandLine {
  target: string;
  service: string;
  /** The local program and its arguments; empty without one. */
  local: string[];
  options: ClientVmOptions;
}

/** Options without a value, and what they set. */
const FLAGS = new Map<
  string,
  [key: "filterEscapeCharsStdout" | "filterEscapeCharsStderr" | "useStdinSocket", value: boolean]
>([
  ["-t", ["filterEscapeCharsStdout", true]],
  ["--filter-escape-chars-stdout", ["filterEscapeCharsStdout", true]],
  ["--no-filter-escape-chars-stdout", ["filterEscapeCharsStdout", false]],
  ["-T", ["filterEscapeCharsStderr", true]],
  ["--filter-escape-chars-stderr", ["filterEscapeCharsStderr", true]],
  ["--no-filter-escape-chars-stderr", ["filterEscapeCharsStderr", false]],
  ["--use-stdin-socket", ["useStdinSocket", true]],
]);

/** Options with a value, and where it goes. */
const VALUED = new Map<
  string,
  "bufferSize" | "agentSocket" | "prefixData" | "sourceQube" | "peerProfile"
>([
  ["--buffer-size", "bufferSize"],
  ["--peer-profile", "peerProfile"],
  ["-a", "agentSocket"],
  ["--agent-socket", "agentSocket"],
  ["-p", "prefixData"],
  ["--prefix-data", "prefixData"],
  ["-s", "sourceQube"],
  ["--source-qube", "sourceQube"],
]);

/**
 * The command lines commander accepts without comment: known options (`--name`, `--name=value`,
 * `-x value`, `-xvalue`) before TARGET SERVICE, the first operand or a `--` ending the options
 * (as passThroughOptions does). Null for anything else (help, errors, combined short flags),
 * which only commander may judge.
 */
export function parseFast(args: string[], defaultAgentSocket: string): ClientVmCommandLine | null {
  const options: ClientVmOptions = { agentSocket: defaultAgentSocket };
  let index = 0;
  for (; index < args.length; index++) {
    const arg = args[index]!;
    if (!arg.startsWith("-") || arg === "-") break;
    // The end of the options, as for commander (a later `--` is the local program's).
    if (arg === "--") {
      index++;
      break;
    }
    const long = arg.startsWith("--");
    const equals = long ? arg.indexOf("=") : -1;
    const name = equals >= 0 ? arg.slice(0, equals) : long ? arg : arg.slice(0, 2);
    const attached =
      equals >= 0 ? arg.slice(equals + 1) : !long && arg.length > 2 ? arg.slice(2) : undefined;
    const flag = FLAGS.get(name);
    if (flag) {
      // `-tT` and `--flag=x` are commander's to judge.
      if (attached !== undefined) return null;
      options[flag[0]] = flag[1];
      continue;
    }
    const key = VALUED.get(name);
    if (!key) return null;
    let value = attached;
    if (value === undefined) {
      value = args[++index];
      if (value === undefined || value.startsWith("-")) return null;
    }
    // Given twice: commander's error.
    if ((key === "prefixData" || key === "sourceQube") && options[key] !== undefined) return null;
    options[key] = value;
  }
  const [target, service, ...local] = args.slice(index);
  if (target === undefined || service === undefined) return null;
  return { target, service, local, options };
}

/** Linux's major number of the memory devices (/dev/null, /dev/zero, /dev/urandom, ...). */
const MEMORY_DEVICES_MAJOR = 1;

/**
 * isatty(3) without Bun's process.stdout or node:tty, either of which costs ~10 ms to set up:
 * only a character device can be a terminal, and not /dev/null and its kind; only for other
 * character devices is node:tty asked.
 */
export function isTerminal(fd: number): boolean {
  try {
    const stat = fstatSync(fd);
    if (!stat.isCharacterDevice() || Math.floor(stat.rdev / 256) % 4096 === MEMORY_DEVICES_MAJOR)
      return false;
  } catch {
    return false;
  }
  return (require("node:tty") as typeof import("node:tty")).isatty(fd);
}

/**
 * The call a command line asks for, in an environment whose stdout and stderr are `stdoutFd`
 * and `stderrFd` (for the default of -t/-T). Throws an ExitError (message without the program
 * name) for a bad option or environment.
 */
export function resolveCall(
  commandLine: ClientVmCommandLine,
  env: Record<string, string | undefined>,
  stdio: { stdoutFd: number; stderrFd: number },
): ClientVmCall {
  const { target, service, local, options } = commandLine;
  let profile: PeerProfile;
  try {
    profile = peerProfile(parsePeerProfileName(options.peerProfile ?? "default"), env);
  } catch (error) {
    throw new ExitError(error instanceof Error ? error.message : String(error), QREXEC_EXIT_USAGE);
  }
  const bufferSize =
    options.bufferSize === undefined ? profile.dataRingBytes : parseBufferSize(options.bufferSize);
  if (bufferSize === null)
    throw new ExitError(`invalid buffer size '${options.bufferSize}'`, QREXEC_EXIT_FATAL);
  const localProgram = local.length > 0 ? local : null;
  if (options.useStdinSocket && localProgram)
    throw new ExitError(
      "--use-stdin-socket cannot be used with a local program",
      QREXEC_EXIT_USAGE,
    );
  let domain: number;
  try {
    domain = ownDomain(env);
  } catch (error) {
    throw new ExitError(error instanceof Error ? error.message : String(error), QREXEC_EXIT_FATAL);
  }
  return {
    domain,
    agentSocket: options.agentSocket,
    target,
    service,
    source: options.sourceQube ?? "",
    bufferSize,
    profile,
    prefix: options.prefixData !== undefined ? new TextEncoder().encode(options.prefixData) : null,
    filterStdout:
      options.filterEscapeCharsStdout ?? (localProgram === null && isTerminal(stdio.stdoutFd)),
    filterStderr: options.filterEscapeCharsStderr ?? isTerminal(stdio.stderrFd),
    useStdinSocket: options.useStdinSocket === true,
    localProgram,
  };
}
