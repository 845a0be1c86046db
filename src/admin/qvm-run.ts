// What dom0's qvm-run does (upstream: qubesadmin/tools/qvm_run.py), against the lab's admin
// service (qubesd's role) and qrexec-client: find the qube, start it unless --no-autostart, or
// create a DisposableVM for --dispvm, run qubes.VMShell with "CMD; exit" first on its stdin (or
// the --service given) as USER, pass the stdio with --pass-io, and end with the command's status.

import { join } from "node:path";
import { BIN_DIR } from "../install-paths.ts";
import { defaultStateDir } from "../paths.ts";
import { qubesdCallText, QubesdError } from "./qubesd.ts";
import { shellQuote } from "../shell-quote.ts";

const QREXEC_CLIENT = join(BIN_DIR, "qrexec-client");

export interface QvmRunOptions {
  /** null with --dispvm. */
  vm: string | null;
  /** The command, or the service (with +ARG) for --service. */
  command: string;
  args: string[];
  user: string | null;
  autostart: boolean;
  passIo: boolean;
  localcmd: string | null;
  service: boolean;
  noShell: boolean;
  /** --dispvm: undefined without it, null for the default template. */
  dispvm: string | null | undefined;
  filterEscapes: boolean;
  verbose: number;
}

/** A failure upstream reports as `qvm-run: error: ...` with this status. */
export class QvmRunError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export interface Dom0Sockets {
  qubesd: string;
  daemons: string;
}

/** The lab's sockets, from dom0's environment (qrx run dom0), else from $QRX_DIR's lab. */
export function dom0Sockets(env: NodeJS.ProcessEnv = process.env): Dom0Sockets {
  const dir = defaultStateDir(env);
  return {
    qubesd: env.QRX_QUBESD_SOCKET || join(dir, "admin.sock"),
    daemons: env.QRX_SOCKET_DIR || join(dir, "run"),
  };
}

/** The shell line qubes.VMShell reads: the command, its arguments quoted, then exit. */
export function vmShellInput(options: Pick<QvmRunOptions, "command" | "args" | "noShell">): string {
  const command = options.noShell ? shellQuote(options.command) : options.command;
  const words = [command, ...options.args.map(shellQuote)];
  return `${words.join(" ")}; exit\n`;
}

async function admin(sockets: Dom0Sockets, method: string, dest: string, payload?: string) {
  try {
    return await qubesdCallText(sockets.qubesd, method, dest, { payload });
  } catch (error) {
    if (error instanceof QubesdError) throw new QvmRunError(error.message, 1);
    const code = (error as { code?: string }).code;
    if (code === "ENOENT" || code === "ECONNREFUSED") {
      const why = `cannot connect to qubesd at ${sockets.qubesd}: is the lab up? (qrx lab up)`;
      throw new QvmRunError(why, 1);
    }
    throw error;
  }
}

/** The power state of every qube (admin.vm.List). */
async function qubeStates(sockets: Dom0Sockets): Promise<Map<string, string>> {
  const states = new Map<string, string>();
  for (const line of (await admin(sockets, "admin.vm.List", "dom0")).split("\n")) {
    const [name, ...properties] = line.split(" ");
    if (!name) continue;
    const state = properties.find((property) => property.startsWith("state="));
    states.set(name, state?.slice("state=".length) ?? "");
  }
  return states;
}

/** The qube to run in, started if it has to be; a DisposableVM is created (and killed after). */
async function prepareQube(
  options: QvmRunOptions,
  sockets: Dom0Sockets,
  say: (text: string) => void,
): Promise<{ name: string; disposable: boolean }> {
  if (options.dispvm !== undefined) {
    const name = await admin(sockets, "admin.vm.CreateDisposable", options.dispvm ?? "@dispvm");
    await admin(sockets, "admin.vm.Start", name);
    return { name, disposable: true };
  }
  const name = options.vm!;
  const state = (await qubeStates(sockets)).get(name);
  if (state === undefined) throw new QvmRunError(`no such domain: '${name}'`, 2);
  if (state !== "Running") {
    if (!options.autostart) {
      throw new QvmRunError(`Qube '${name}' is not running (--no-autostart)`, 1);
    }
    if (options.verbose > 1) say(`Starting ${name}`);
    await admin(sockets, "admin.vm.Start", name);
  }
  return { name, disposable: false };
}

function clientArgv(options: QvmRunOptions, vm: string, sockets: Dom0Sockets): string[] {
  const argv = [QREXEC_CLIENT, `--socket-dir=${sockets.daemons}`, "-d", vm];
  if (options.filterEscapes) argv.push("-t", "-T");
  if (options.passIo && options.localcmd !== null) argv.push("-l", options.localcmd);
  const service = options.service ? options.command : "qubes.VMShell";
  if (!options.service) argv.push("--prefix-data", vmShellInput(options));
  argv.push(`${options.user ?? "DEFAULT"}:QUBESRPC ${service} dom0`);
  return argv;
}

/** Runs it; resolves with qvm-run's exit status (the command's). */
export async function qvmRun(options: QvmRunOptions, sockets = dom0Sockets()): Promise<number> {
  // console, not process.stderr: that stream costs ~8 ms of qvm-run's ~24 to build.
  const say = (text: string) => console.error(text);
  const qube = await prepareQube(options, sockets, say);
  try {
    const shown = [options.command, ...options.args].join(" ");
    if (options.verbose > 0) say(`Running '${shown}' on ${qube.name}`);
    const io = options.passIo ? "inherit" : "ignore";
    const child = Bun.spawn(clientArgv(options, qube.name, sockets), { stdio: [io, io, io] });
    const ignore = () => {};
    process.on("SIGINT", ignore); // ^C reaches the command (the terminal's group); we report it
    const code = await child.exited;
    process.off("SIGINT", ignore);
    if (code !== 0 && options.verbose > 0) say(`${qube.name}: command failed with code: ${code}`);
    return code;
  } finally {
    // The call's status is what counts; a DisposableVM already gone needs no kill.
    if (qube.disposable) await admin(sockets, "admin.vm.Kill", qube.name).catch(() => {});
  }
}
