// qrexec-client-vm [options] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]   (§10)
import { Command, CommanderError, Option } from "commander";
import { CallError, callService } from "../client-vm/client-vm.ts";
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

let once: Record<string, boolean> = {};
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
  .addOption(new Option("--buffer-size <n>", "minimum vchan ring size in each direction").default(String(DEFAULT_BUFFER_SIZE)))
  .option("-t, --filter-escape-chars-stdout", "replace unsafe characters in the service's stdout")
  .option("--no-filter-escape-chars-stdout", "never filter stdout")
  .option("-T, --filter-escape-chars-stderr", "replace unsafe characters in the service's stderr")
  .option("--no-filter-escape-chars-stderr", "never filter stderr")
  .option("-a, --agent-socket <path>", "agent socket", process.env.QRX_AGENT_SOCKET ?? DEFAULT_AGENT_SOCKET)
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
  if (error instanceof CommanderError) process.exit(error.code === "commander.helpDisplayed" || error.code === "commander.version" ? 0 : QREXEC_EXIT_USAGE);
  throw error;
}

const [target, service, local] = program.processedArgs as [string, string, string[]];
const options = program.opts<{
  bufferSize: string;
  filterEscapeCharsStdout?: boolean;
  filterEscapeCharsStderr?: boolean;
  agentSocket: string;
  prefixData?: string;
  sourceQube?: string;
  useStdinSocket?: boolean;
}>();

function fail(message: string, code: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

requireStdio(PROGRAM, 125);
const bufferSize = parseBufferSize(options.bufferSize);
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
    prefix: options.prefixData !== undefined ? new TextEncoder().encode(options.prefixData) : null,
    filterStdout: options.filterEscapeCharsStdout ?? (localProgram === null && process.stdout.isTTY === true),
    filterStderr: options.filterEscapeCharsStderr ?? process.stderr.isTTY === true,
    useStdinSocket: options.useStdinSocket === true,
    localProgram,
    log: logger(PROGRAM),
  });
  process.exit(code);
} catch (error) {
  if (error instanceof CallError) fail(error.code === 126 ? error.message : `${PROGRAM}: ${error.message}`, error.code);
  fail(`${PROGRAM}: ${error instanceof Error ? error.message : error}`, QREXEC_EXIT_FATAL);
}
