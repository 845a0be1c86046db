// The command lines qvm-run takes without commander (src/cli/qvm-run.ts): flags that take no
// value, each a word of its own, then VMNAME and COMMAND [ARGS...] — what scripts type. Exactly
// what commander (qvm-run-command.ts) would read the same way; test/startup/plain-qvm-run.test.ts
// checks that against it. Also the run both paths end in.
import { qvmRun, QvmRunError, type QvmRunOptions } from "../admin/qvm-run.ts";

export const PROGRAM = "qvm-run";

type Plain = Omit<QvmRunOptions, "vm" | "command" | "args" | "filterEscapes"> & {
  filter: boolean | undefined;
};

/** What each flag does; commander's later flag wins, as here. */
const FLAGS: Record<string, (plain: Plain) => void> = {
  "-p": (plain) => (plain.passIo = true),
  "--pass-io": (plain) => (plain.passIo = true),
  "-q": (plain) => plain.verbose--,
  "--quiet": (plain) => plain.verbose--,
  "-v": (plain) => plain.verbose++,
  "--verbose": (plain) => plain.verbose++,
  "-a": (plain) => (plain.autostart = true),
  "--autostart": (plain) => (plain.autostart = true),
  "-n": (plain) => (plain.autostart = false),
  "--no-autostart": (plain) => (plain.autostart = false),
  "--service": (plain) => (plain.service = true),
  "--no-shell": (plain) => (plain.noShell = true),
  "--filter-escape-chars": (plain) => (plain.filter = true),
  "--no-filter-escape-chars": (plain) => (plain.filter = false),
  "--gui": () => {},
  "--no-gui": () => {},
  "--nogui": () => {},
};

/**
 * `[FLAG...] VMNAME COMMAND [ARGS...]` as commander reads it, else null. `terminal`: whether
 * stdout is a terminal (--pass-io then filters escapes by default).
 */
export function plainQvmRun(args: readonly string[], terminal: boolean): QvmRunOptions | null {
  const plain: Plain = {
    user: null,
    autostart: true,
    passIo: false,
    localcmd: null,
    service: false,
    noShell: false,
    dispvm: undefined,
    verbose: 1,
    filter: undefined,
  };
  let index = 0;
  for (; index < args.length && args[index]!.startsWith("-"); index++) {
    const flag = Object.hasOwn(FLAGS, args[index]!) ? FLAGS[args[index]!] : undefined;
    if (flag === undefined) return null;
    flag(plain);
  }
  const vm = args[index];
  const [command, ...rest] = args.slice(index + 1);
  if (vm === undefined || vm === "" || command === undefined) return null;
  const { filter, ...options } = plain;
  const filterEscapes = filter ?? (plain.passIo && terminal);
  return { ...options, vm, command, args: rest, filterEscapes };
}

/** Runs OPTIONS and exits with the command's status, or upstream's for a failure. */
export async function runQvmRun(options: QvmRunOptions): Promise<never> {
  try {
    process.exit(await qvmRun(options));
  } catch (error) {
    if (!(error instanceof QvmRunError)) throw error;
    console.error(`${PROGRAM}: error: ${error.message}`);
    process.exit(error.exitCode);
  }
}
