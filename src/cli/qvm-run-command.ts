// qvm-run [options] VMNAME COMMAND [ARGS...] | --dispvm[=BASE] COMMAND [ARGS...]   (dom0)
// Upstream's flag names (qubesadmin/tools/qvm_run.py); the work is in src/admin/qvm-run.ts.
// Commander's side: src/cli/qvm-run.ts comes here for a command line qvm-run-plain.ts leaves.
import { Command, CommanderError, Option } from "commander";
import type { QvmRunOptions } from "../admin/qvm-run.ts";
import { isTerminal } from "./output.ts";
import { PROGRAM, runQvmRun } from "./qvm-run-plain.ts";

/** qvm-run's command line, as commander reads it. */
export function qvmRunCommand(): Command {
  return new Command(PROGRAM)
    .description("run a command (or a service) in a qube, from dom0")
    .usage("[options] VMNAME COMMAND [ARGS...]  |  --dispvm[=BASE_APPVM] COMMAND [ARGS...]")
    .argument("[words...]", "VMNAME (not with --dispvm), then COMMAND and its arguments")
    .option("-u, --user <user>", "run the command in the qube as USER")
    .option("-a, --autostart", "start the qube if it is not running (the default)")
    .option("-n, --no-autostart", "do not start the qube; fail if it is not running")
    .addOption(new Option("--auto").hideHelp())
    .addOption(new Option("--no-auto").hideHelp())
    .option("-p, --pass-io", "pass stdin, stdout and stderr to and from the command")
    .option("--localcmd <command>", "with --pass-io, connect the command's stdio to local COMMAND")
    .option("--service", "COMMAND is a service (NAME+ARG) to call, not a shell command")
    .option("--no-shell", "run COMMAND and ARGS without shell interpretation")
    .option("--dispvm [base_appvm]", "run in a new DisposableVM (of BASE_APPVM, else the default)")
    .option(
      "--filter-escape-chars",
      "filter terminal escape sequences (default: stdout a terminal)",
    )
    .option("--no-filter-escape-chars", "do not filter terminal escape sequences")
    .option("--gui", "accepted for compatibility: the lab has no GUI")
    .option("--no-gui", "accepted for compatibility: the lab has no GUI")
    .addOption(new Option("--nogui").hideHelp())
    .option("-v, --verbose", "say more (repeatable)", (_value, total: number) => total + 1, 0)
    .option("-q, --quiet", "say less (repeatable)", (_value, total: number) => total + 1, 0)
    .passThroughOptions()
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) })
    .addHelpText(
      "after",
      `
Without --pass-io the command's input and output are not connected (as upstream, where they go
to the qube's GUI); the exit status is the command's in any case.

Examples:
  qvm-run work 'echo hello > ~/hello.txt'
  qvm-run -p work 'cat ~/hello.txt'
  qvm-run -p --user root vault id -u
  echo 11 22 | qvm-run -p --service vault test.Add
  qvm-run -p --dispvm=default-dvm 'echo $QRX_DOMAIN_NAME'
  qvm-run --no-autostart personal true
`,
    );
}

type Flags = {
  user?: string;
  autostart: boolean;
  auto?: boolean;
  passIo?: boolean;
  localcmd?: string;
  service?: boolean;
  shell: boolean;
  dispvm?: string | true;
  filterEscapeChars?: boolean;
  verbose: number;
  quiet: number;
};

/**
 * The run PROGRAM has parsed, or what is wrong with it (upstream's words). `terminal`: whether
 * stdout is a terminal (--pass-io then filters escapes by default).
 */
export function optionsOf(program: Command, terminal: boolean): QvmRunOptions | { usage: string } {
  const flags = program.opts<Flags>();
  const words = [...program.args];
  if (words[0] === "--") words.shift();
  const dispvm =
    flags.dispvm === undefined ? undefined : flags.dispvm === true ? null : flags.dispvm;
  const vm = dispvm === undefined ? (words.shift() ?? null) : null;
  const command = words.shift();
  if (dispvm === undefined && vm === null) {
    return { usage: "the following arguments are required: VMNAME, COMMAND" };
  }
  if (command === undefined) return { usage: "the following arguments are required: COMMAND" };
  if (flags.localcmd !== undefined && !flags.passIo) {
    return { usage: "--localcmd requires --pass-io" };
  }
  return {
    vm,
    command,
    args: words,
    user: flags.user ?? null,
    autostart: flags.autostart !== false && flags.auto !== false,
    passIo: flags.passIo === true,
    localcmd: flags.localcmd ?? null,
    service: flags.service === true,
    noShell: flags.shell === false,
    dispvm,
    filterEscapes: flags.filterEscapeChars ?? (flags.passIo === true && terminal),
    verbose: 1 + flags.verbose - flags.quiet,
  };
}

/** qvm-run with ARGV (process.argv's shape) read by commander. */
export function runWithCommander(argv: string[]): void {
  const program = qvmRunCommand();
  try {
    program.parse(argv);
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    process.exit(error.exitCode === 0 ? 0 : 2);
  }
  const options = optionsOf(program, isTerminal(1));
  if ("usage" in options) {
    process.stderr.write(`${program.helpInformation()}${PROGRAM}: error: ${options.usage}\n`);
    process.exit(2);
  }
  void runQvmRun(options);
}
