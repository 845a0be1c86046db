// qrexec-daemon [-q] [--socket-dir=DIR] [-p|--policy-program=PATH] [-D|--direct] [-u|--uuid=UUID]
//               DOMID NAME [DEFAULT_USER]   (§7.1)
import { Command, InvalidArgumentError } from "commander";
import { mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_QUBESD_SOCKET } from "../admin/qubesd.ts";
import { DEFAULT_DAEMON_SOCKET_DIR, DEFAULT_POLICY_SOCKET } from "../protocol/constants.ts";
import { defaultStateDir } from "../paths.ts";
import { COMPILED, entryCommand } from "../install-paths.ts";
import { addLogOptions, die, logger } from "./common.ts";
import { cheapOutput } from "./output.ts";

const PROGRAM = "qrexec-daemon";
const DEFAULT_POLICY_PROGRAM = "/usr/lib/qubes/qrexec-policy-exec";
const READY_LINE = "ready\n";
/** Set by the waiting parent: the child reports readiness on its stdout (a pipe to the parent). */
const NOTIFY_VARIABLE = "QRX_DAEMON_NOTIFY";

function parseDomain(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) <= 0 || !Number.isSafeInteger(Number(text))) {
    throw new InvalidArgumentError("the domain id must be an integer greater than 0");
  }
  return Number(text);
}

const program = cheapOutput(new Command(PROGRAM))
  .description("dom0's qrexec daemon for one VM: its control vchan, policy queries and call set-up")
  .argument("<domid>", "the VM's domain id (> 0)", parseDomain)
  .argument("<name>", "the VM's name")
  .argument("[default_user]", "user for DEFAULT: commands", "user")
  .option("-q, --quiet", "do not print progress while waiting for the agent; log only warnings")
  .option(
    "--socket-dir <dir>",
    `daemon socket directory (default $QRX_SOCKET_DIR, else ${DEFAULT_DAEMON_SOCKET_DIR})`,
  )
  .option(
    "-p, --policy-program <path>",
    "policy evaluator run when the policy socket fails",
    DEFAULT_POLICY_PROGRAM,
  )
  .option(
    "--policy-socket <path>",
    "policy daemon socket " +
      `(default $QREXEC_POLICY_SOCKET, else ${DEFAULT_POLICY_SOCKET}; qrx extension)`,
  )
  .option("-D, --direct", "stay in the foreground and log to stderr")
  .option("-u, --uuid <uuid>", "the VM's UUID (adds the qrexec.uuid:<uuid> socket link)")
  .option(
    "--qubesd-socket <path>",
    "qubesd (admin service) socket for DisposableVMs and autostart; empty: none " +
      `(default $QRX_QUBESD_SOCKET, else ${DEFAULT_QUBESD_SOCKET}; qrx extension)`,
  )
  .option(
    "--stats-file <path>",
    "keep call counts in this JSON file (qrx extension, read by qrx lab status)",
  )
  .addHelpText(
    "after",
    `
Environment:
  QREXEC_STARTUP_TIMEOUT  seconds to wait for the agent (default 60)
  QREXEC_STARTUP_NOWAIT   set: return at once and wait for the agent without a limit
  QREXEC_SERVICE_PATH     dom0's services, for calls into dom0
  QREXEC_LOG_DIR          where the log goes without --direct (default /var/log/qubes)
  QRX_VCHAN               vchan transport: shm (default) or socket
  QRX_SOCKET_DIR          default for --socket-dir
  QRX_QUBESD_SOCKET       default for --qubesd-socket (/run/qubesd.sock)

Example:
  qrexec-daemon --socket-dir=/tmp/qrexec -p ./policy-exec --direct 2 work
`,
  );

addLogOptions(program, false);
program.parse(process.argv);
const [domain, name, defaultUser] = program.processedArgs as [number, string, string];
const given = program.opts<{
  quiet?: boolean;
  socketDir?: string;
  policyProgram: string;
  policySocket?: string;
  direct?: boolean;
  uuid?: string;
  qubesdSocket?: string;
  statsFile?: string;
}>();
// The environment's defaults are read after parsing: --help does not depend on them, so
// bin/launch.sh replays it without starting Bun (scripts/bundle.ts).
const options = {
  ...given,
  socketDir: given.socketDir ?? (process.env.QRX_SOCKET_DIR || DEFAULT_DAEMON_SOCKET_DIR),
  policySocket: given.policySocket ?? process.env.QREXEC_POLICY_SOCKET ?? DEFAULT_POLICY_SOCKET,
  qubesdSocket: given.qubesdSocket ?? process.env.QRX_QUBESD_SOCKET ?? DEFAULT_QUBESD_SOCKET,
};

const noWait = process.env.QREXEC_STARTUP_NOWAIT !== undefined;
const startupSeconds = Number(process.env.QREXEC_STARTUP_TIMEOUT ?? "60");
const startupTimeoutMs = noWait
  ? -1
  : Number.isFinite(startupSeconds) && startupSeconds > 0
    ? startupSeconds * 1000
    : 60_000;

// No top-level await: the start-up bundle is CommonJS (docs/architecture.md, "Start-up").
void (options.direct ? runDaemon() : runInBackground());

/** Upstream forks; we start ourselves again with --direct, detached, and wait for it to connect. */
async function runInBackground(): Promise<never> {
  const logPath = openLog();
  const log = openSync(logPath, "a");
  // argv[1]: the script this process runs, the bundle or the source file; compiled, the
  // executable itself under the daemon's name.
  const args = ["--direct", ...process.argv.slice(2)];
  const { cmd, argv0 } = COMPILED
    ? entryCommand("qrexec-daemon", args)
    : { cmd: [process.execPath, process.argv[1]!, ...args], argv0: undefined };
  const env = { ...process.env, [NOTIFY_VARIABLE]: "1" };
  const stdio = ["ignore", noWait ? "ignore" : "pipe", log] as const;
  const child = Bun.spawn(cmd, { argv0, stdio: [...stdio], detached: true, env });
  child.unref();
  if (noWait) process.exit(0);
  if (!options.quiet) process.stderr.write("Waiting for VM's qrexec agent.");
  const dots = options.quiet ? null : setInterval(() => process.stderr.write("."), 1000);
  const output = await firstLine(child.stdout as ReadableStream<Uint8Array>);
  if (dots) clearInterval(dots);
  if (output.startsWith(READY_LINE)) {
    if (!options.quiet) process.stderr.write("connected\n");
    process.exit(0);
  }
  const status = child.exitCode ?? (await child.exited);
  process.stderr.write(`\n${PROGRAM}: the daemon for ${name} did not start; see ${logPath}\n`);
  process.exit(status === 3 ? 3 : 1);
}

/** The child's first line (it keeps stdout open, so reading to the end would never finish). */
async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader();
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
  } catch {
    // The child's stdout broke off: what was read so far is the answer.
  }
  reader.releaseLock();
  return text;
}

function openLog(): string {
  const candidates = [
    process.env.QREXEC_LOG_DIR ?? "/var/log/qubes",
    join(defaultStateDir(), "log"),
  ];
  for (const dir of candidates) {
    try {
      mkdirSync(dir, { recursive: true });
      const path = join(dir, `qrexec.${name}.log`);
      openSync(path, "a");
      return path;
    } catch {
      // Not writable here: try the next candidate.
    }
  }
  die(PROGRAM, `cannot open a log file in ${candidates.join(" or ")}`, 1);
}

/** The daemon's modules load here: --help, usage errors and the waiting parent need few. */
async function runDaemon(): Promise<void> {
  const { Daemon } = await import("../daemon/daemon.ts");
  const { localServiceContext } = await import("../services/start.ts");
  const log = logger(`${PROGRAM}.${name}`);
  mkdirSync(options.socketDir, { recursive: true });
  const policySocket = options.policySocket || "(no socket)";
  const policy = `${policySocket}, else ${options.policyProgram}`;
  log.debug(`sockets in ${options.socketDir}; policy from ${policy}`);
  const daemon = new Daemon({
    domain,
    name,
    uuid: options.uuid ?? null,
    defaultUser,
    socketDir: options.socketDir,
    policy: {
      socketPath: options.policySocket === "" ? null : options.policySocket,
      program: options.policyProgram,
    },
    startupTimeoutMs,
    dom0Services: localServiceContext({ captureStderr: false, log }),
    qubesdSocket: options.qubesdSocket === "" ? null : options.qubesdSocket,
    statsFile: options.statsFile ?? null,
    log,
  });
  const stop = (code: number) => {
    daemon.stop();
    process.exit(code);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => stop(0));
  try {
    const version = await daemon.start((reason) => {
      log(reason);
      stop(1);
    });
    log(`connected to the agent of ${name} (domain ${domain}), protocol ${version}`);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    log.warn(`cannot connect to the agent of ${name}: ${message}`);
    process.exit((error as { code?: string }).code === "ETIMEDOUT" ? 3 : 1);
  }
  // The parent waits for this line on our stdout (a pipe) before it exits 0.
  if (process.env[NOTIFY_VARIABLE]) process.stdout.write(READY_LINE);
}
