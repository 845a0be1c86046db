// qrexec-client-vm [options] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]   (§10)
//
// Start-up is part of every call's latency, so the common command line is parsed without
// commander (importing it costs ~10 ms of a ~30 ms start); anything else (help, errors,
// combined short flags, `--`) goes through commander exactly as before.
import { fstatSync } from "node:fs";
import { ExitError } from "../call/exit-error.ts";
import { callService } from "../client-vm/client-vm.ts";
import { parsePeerProfileName, peerProfile, type PeerProfile } from "../agent/peer-profile.ts";
import { DEFAULT_AGENT_SOCKET } from "../protocol/constants.ts";
import { QREXEC_EXIT_FATAL, QREXEC_EXIT_USAGE } from "../protocol/exit.ts";
import { logger, ownDomain, requireStdio } from "./common.ts";

const PROGRAM = "qrexec-client-vm";
const DEFAULT_BUFFER_SIZE = 65536;
const INT_MAX = 0x7fff_ffff;

/** C `strtoul(text, &end, 0)` with upstream's checks: a leading digit, nothing after, <= INT_MAX. */
function parseBufferSize(text: string): number | null {
  if (!/^[0-9]/.test(text)) return null;
  const match = /^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!match) return null;
  const value = text.startsWith("0x") || text.startsWith("0X") ? Number.parseInt(text.slice(2), 16) : text.length > 1 && text.startsWith("0") ? Number.parseInt(text, 8) : Number(text);
  return Number.isSafeInteger(value) && value <= INT_MAX ? value : null;
}

interface Options {
  /** Absent: the profile's default (65536; 1024 for mirage). */
  bufferSize?: string;
  peerProfile?: string;
  filterEscapeCharsStdout?: boolean;
  filterEscapeCharsStderr?: boolean;
  agentSocket: string;
  prefixData?: string;
  sourceQube?: string;
  useStdinSocket?: boolean;
}

interface Parsed {
  target: string;
  service: string;
  local: string[];
  options: Options;
}

const defaultAgentSocket = () => process.env.QRX_AGENT_SOCKET ?? DEFAULT_AGENT_SOCKET;

/** Options without a value, and what they set. */
const FLAGS = new Map<string, [key: "filterEscapeCharsStdout" | "filterEscapeCharsStderr" | "useStdinSocket", value: boolean]>([
  ["-t", ["filterEscapeCharsStdout", true]],
  ["--filter-escape-chars-stdout", ["filterEscapeCharsStdout", true]],
  ["--no-filter-escape-chars-stdout", ["filterEscapeCharsStdout", false]],
  ["-T", ["filterEscapeCharsStderr", true]],
  ["--filter-escape-chars-stderr", ["filterEscapeCharsStderr", true]],
  ["--no-filter-escape-chars-stderr", ["filterEscapeCharsStderr", false]],
  ["--use-stdin-socket", ["useStdinSocket", true]],
]);

/** Options with a value, and where it goes. */
const VALUED = new Map<string, "bufferSize" | "agentSocket" | "prefixData" | "sourceQube" | "peerProfile">([
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
 * `-x value`, `-xvalue`) before TARGET SERVICE, the first operand ending the options (as
 * passThroughOptions does). Null for anything else, which commander then parses.
 */
function parseFast(args: string[]): Parsed | null {
  const options: Options = { agentSocket: defaultAgentSocket() };
  let index = 0;
  for (; index < args.length; index++) {
    const arg = args[index]!;
    if (!arg.startsWith("-") || arg === "-") break;
    const long = arg.startsWith("--");
    const equals = long ? arg.indexOf("=") : -1;
    const name = equals >= 0 ? arg.slice(0, equals) : long ? arg : arg.slice(0, 2);
    const attached = equals >= 0 ? arg.slice(equals + 1) : !long && arg.length > 2 ? arg.slice(2) : undefined;
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
  const operands = args.slice(index);
  if (operands.length < 2) return null;
  return { target: operands[0]!, service: operands[1]!, local: operands.slice(2), options };
}

async function parseWithCommander(): Promise<Parsed> {
  const { Command, CommanderError, Option } = await import("commander");
  const once: Record<string, boolean> = {};
  function atMostOnce(flag: string) {
    return (value: string) => {
      if (once[flag]) throw new CommanderError(QREXEC_EXIT_USAGE, "qrx.once", `${flag} may be given only once`);
      once[flag] = true;
      return value;
    };
  }

  const program = new Command(PROGRAM)
    .description("call a qrexec service in another domain; dom0's policy decides")
    .usage("[options] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]")
    .argument("<target>", "target domain; $ is read as @ ($dispvm, $default); empty lets the policy choose")
    .argument("<service>", "service name with an optional +ARGUMENT")
    .argument("[local...]", "local program and its arguments, connected to the service's stdio")
    .passThroughOptions()
    .addOption(new Option("--buffer-size <n>", `minimum vchan ring size in each direction (default: ${DEFAULT_BUFFER_SIZE}; 1024 with --peer-profile=mirage)`))
    .addOption(new Option("--peer-profile <name>", "behave on the wire as this kind of peer: default, or mirage (a mirage-qubes 2.0 unikernel: HELLO 3, 1 KiB rings; QRX_MIRAGE_BUGS=chunk-length reproduces its chunk-length bug)").choices(["default", "mirage"]))
    .option("-t, --filter-escape-chars-stdout", "replace unsafe characters in the service's stdout")
    .option("--no-filter-escape-chars-stdout", "never filter stdout")
    .option("-T, --filter-escape-chars-stderr", "replace unsafe characters in the service's stderr")
    .option("--no-filter-escape-chars-stderr", "never filter stderr")
    .option("-a, --agent-socket <path>", "agent socket", defaultAgentSocket())
    .option("-p, --prefix-data <data>", "send DATA before the local input", atMostOnce("--prefix-data"))
    .option("-s, --source-qube <name>", "source qube for relayed calls", atMostOnce("--source-qube"))
    .option("--use-stdin-socket", "fd 0 is a socket used in both directions")
    .exitOverride()
    .addHelpText(
      "after",
      `
Exit status: the service's (or, when that is 0, the local program's); 126 when the policy refused
("Request refused"); 128+N when killed by signal N; 255 when the vchan closed before an exit code.

Examples:
  qrexec-client-vm vault test.Add /usr/bin/add-client 11 22
  echo hello | qrexec-client-vm --buffer-size=1024 work qubes.Echo
`,
    );

  try {
    program.parse(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exit(error.code === "commander.helpDisplayed" || error.code === "commander.version" ? 0 : QREXEC_EXIT_USAGE);
    }
    throw error;
  }
  const [target, service, local] = program.processedArgs as [string, string, string[]];
  return { target, service, local, options: program.opts<Options>() };
}

/** Linux's major number of the memory devices (/dev/null, /dev/zero, /dev/urandom, ...). */
const MEMORY_DEVICES_MAJOR = 1;

/**
 * isatty(3) without Bun's process.stdout or node:tty, either of which costs ~10 ms to set up:
 * only a character device can be a terminal, and not /dev/null and its kind; only for other
 * character devices is node:tty asked.
 */
function isTerminal(fd: number): boolean {
  try {
    const stat = fstatSync(fd);
    if (!stat.isCharacterDevice() || Math.floor(stat.rdev / 256) % 4096 === MEMORY_DEVICES_MAJOR) return false;
  } catch {
    return false;
  }
  return (require("node:tty") as typeof import("node:tty")).isatty(fd);
}

const { target, service, local, options } = parseFast(process.argv.slice(2)) ?? (await parseWithCommander());

function fail(message: string, code: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

requireStdio(PROGRAM, 125);
let profile: PeerProfile;
try {
  profile = peerProfile(parsePeerProfileName(options.peerProfile ?? "default"));
} catch (error) {
  fail(`${PROGRAM}: ${error instanceof Error ? error.message : error}`, QREXEC_EXIT_USAGE);
}
const bufferSize = options.bufferSize === undefined ? profile.dataRingBytes : parseBufferSize(options.bufferSize);
if (bufferSize === null) fail(`${PROGRAM}: invalid buffer size '${options.bufferSize}'`, QREXEC_EXIT_FATAL);
const localProgram = local.length > 0 ? local : null;
if (options.useStdinSocket && localProgram) fail(`${PROGRAM}: --use-stdin-socket cannot be used with a local program`, QREXEC_EXIT_USAGE);

let domain: number;
try {
  domain = ownDomain();
} catch (error) {
  fail(`${PROGRAM}: ${error instanceof Error ? error.message : error}`, QREXEC_EXIT_FATAL);
}

try {
  const code = await callService({
    domain,
    agentSocket: options.agentSocket,
    target,
    service,
    source: options.sourceQube ?? "",
    bufferSize,
    profile,
    prefix: options.prefixData !== undefined ? new TextEncoder().encode(options.prefixData) : null,
    filterStdout: options.filterEscapeCharsStdout ?? (localProgram === null && isTerminal(1)),
    filterStderr: options.filterEscapeCharsStderr ?? isTerminal(2),
    useStdinSocket: options.useStdinSocket === true,
    localProgram,
    log: logger(PROGRAM),
  });
  process.exit(code);
} catch (error) {
  if (error instanceof ExitError) fail(error.code === 126 ? error.message : `${PROGRAM}: ${error.message}`, error.code);
  fail(`${PROGRAM}: ${error instanceof Error ? error.message : error}`, QREXEC_EXIT_FATAL);
}
