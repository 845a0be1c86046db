// qrexec-client-vm [options] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]   (§10)
//
// Start-up is part of every call's latency, so the common command line is parsed without
// commander (importing it costs ~7 ms of CPU); anything else (help, errors, combined short
// flags) goes through commander exactly as before.
import { DEFAULT_DATA_RING_BYTES } from "../protocol/peer-profile.ts";
import { ExitError } from "../call/exit-error.ts";
import {
  parseFast,
  resolveCall,
  type ClientVmCommandLine,
  type ClientVmOptions,
} from "../client-vm/command-line.ts";
import { DEFAULT_AGENT_SOCKET } from "../protocol/constants.ts";
import { QREXEC_EXIT_FATAL, QREXEC_EXIT_USAGE } from "../protocol/exit.ts";
import { requireStdio } from "./common.ts";
import { processCall } from "../trace.ts";
import { cheapOutput } from "./output.ts";

const PROGRAM = "qrexec-client-vm";

const defaultAgentSocket = () => process.env.QRX_AGENT_SOCKET ?? DEFAULT_AGENT_SOCKET;
/**
 * What parseFast is given as the default socket, to be replaced by defaultAgentSocket(): no
 * argument can hold a NUL. The environment is read only once a call's command line is parsed,
 * so `--help` is the same in every environment and bin/launch.sh replays it without Bun.
 */
const UNSET = "\0";

/** The command line as commander describes it, for help and errors. */
function clientVmProgram({ Command, CommanderError, Option }: typeof import("commander")) {
  const once: Record<string, boolean> = {};
  function atMostOnce(flag: string) {
    return (value: string) => {
      if (once[flag])
        throw new CommanderError(QREXEC_EXIT_USAGE, "qrx.once", `${flag} may be given only once`);
      once[flag] = true;
      return value;
    };
  }

  return cheapOutput(new Command(PROGRAM))
    .description("call a qrexec service in another domain; dom0's policy decides")
    .usage("[options] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]")
    .argument(
      "<target>",
      "target domain; $ is read as @ ($dispvm, $default); empty lets the policy choose",
    )
    .argument("<service>", "service name with an optional +ARGUMENT")
    .argument("[local...]", "local program and its arguments, connected to the service's stdio")
    .passThroughOptions()
    .addOption(
      new Option(
        "--buffer-size <n>",
        `minimum vchan ring size in each direction (default: ` +
          `${DEFAULT_DATA_RING_BYTES}; 1024 with --peer-profile=mirage)`,
      ),
    )
    .addOption(
      new Option(
        "--peer-profile <name>",
        "behave on the wire as this kind of peer: default, or mirage " +
          "(a mirage-qubes 2.0 unikernel: HELLO 3, 1 KiB rings; " +
          "QRX_MIRAGE_BUGS=chunk-length reproduces its chunk-length bug)",
      ).choices(["default", "mirage"]),
    )
    .option("-t, --filter-escape-chars-stdout", "replace unsafe characters in the service's stdout")
    .option("--no-filter-escape-chars-stdout", "never filter stdout")
    .option("-T, --filter-escape-chars-stderr", "replace unsafe characters in the service's stderr")
    .option("--no-filter-escape-chars-stderr", "never filter stderr")
    .option(
      "-a, --agent-socket <path>",
      `agent socket (default: $QRX_AGENT_SOCKET, else ${DEFAULT_AGENT_SOCKET})`,
    )
    .option(
      "-p, --prefix-data <data>",
      "send DATA before the local input",
      atMostOnce("--prefix-data"),
    )
    .option(
      "-s, --source-qube <name>",
      "source qube for relayed calls",
      atMostOnce("--source-qube"),
    )
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
}

async function parseWithCommander(): Promise<ClientVmCommandLine> {
  const commander = await import("commander");
  const { CommanderError } = commander;
  const program = clientVmProgram(commander);
  try {
    program.parse(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exit(
        error.code === "commander.helpDisplayed" || error.code === "commander.version"
          ? 0
          : QREXEC_EXIT_USAGE,
      );
    }
    throw error;
  }
  const [target, service, local] = program.processedArgs as [string, string, string[]];
  const options = program.opts<Partial<ClientVmOptions>>();
  return {
    target,
    service,
    local,
    options: { ...options, agentSocket: options.agentSocket ?? UNSET },
  };
}

function fail(message: string, code: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

// The call's modules load here, after parsing (help and usage errors need only commander), and
// no top-level await: the start-up bundle is CommonJS (docs/architecture.md, "Start-up").
async function main(): Promise<never> {
  const commandLine = parseFast(process.argv.slice(2), UNSET) ?? (await parseWithCommander());
  if (commandLine.options.agentSocket === UNSET)
    commandLine.options.agentSocket = defaultAgentSocket();
  requireStdio(PROGRAM, 125);
  const { callService } = await import("../client-vm/client-vm.ts");
  const { watchSigusr1 } = await import("../native.ts");
  try {
    const call = resolveCall(commandLine, process.env, { stdoutFd: 1, stderrFd: 2 });
    // SIGUSR1 asks for single-socket mode (§6.6). The handler goes in before the local program
    // starts: a program that signals at once must not meet the default action (termination). The
    // pump keeps a signal that comes before the stream exists and applies it once the stdio is set.
    watchSigusr1("any");
    process.exit(await callService({ ...call, trace: processCall(call.domain) }));
  } catch (error) {
    if (error instanceof ExitError)
      fail(error.code === 126 ? error.message : `${PROGRAM}: ${error.message}`, error.code);
    fail(`${PROGRAM}: ${error instanceof Error ? error.message : error}`, QREXEC_EXIT_FATAL);
  }
}

void main();
