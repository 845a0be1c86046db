// qrexec-client [options] -d DOMAIN [-l LOCAL | -c REQID,SRCNAME,SRCID | -e] USER:CMD   (§9)
import { Command, CommanderError } from "commander";
import { ExitError } from "../call/exit-error.ts";
import type { ClientCall } from "../client/client.ts";
import { DEFAULT_DAEMON_SOCKET_DIR } from "../protocol/constants.ts";
import { QREXEC_EXIT_FATAL, QREXEC_EXIT_USAGE } from "../protocol/exit.ts";
import { addLogOptions, logger, requireStdio } from "./common.ts";
import { cheapOutput, writeText } from "./output.ts";

const PROGRAM = "qrexec-client";

let prefixSeen = false;
const program = cheapOutput(new Command(PROGRAM))
  .description("run a command or service in a VM (or dom0) from dom0")
  .usage("[options] -d DOMAIN [-l LOCAL | -c REQID,SRCNAME,SRCID | -e] USER:CMD")
  .argument("[command]", "USER:COMMAND, or DEFAULT:QUBESRPC svc+arg src type target for dom0")
  .option("-d <domain>", "target: a name, uuid:…, or dom0/@adminvm")
  .option(
    "-l <command>",
    "local program connected to the remote stdio (QUBESRPC … runs a dom0 service)",
  )
  .option("-e", "send MSG_JUST_EXEC: start the command without stdio")
  .option("-E, --no-exit-code", "exit 0 once the data phase ran")
  .option("-c <request>", "connect an allowed request: REQID,SRCNAME,SRCID")
  .option("-t", "filter unsafe characters in remote stdout")
  .option("-T", "filter unsafe characters in remote stderr")
  .option("-w <seconds>", "data vchan connection timeout, 0 = none", "10")
  .option("-W", "with -c: wait until the call ends")
  .option(
    "-k",
    "kill the domain (admin.vm.Kill through $QRX_QUBESD_SOCKET, " +
      "default /run/qubesd.sock) before exiting",
  )
  .option(
    "--socket-dir <dir>",
    `daemon socket directory (default $QRX_SOCKET_DIR, else ${DEFAULT_DAEMON_SOCKET_DIR})`,
  )
  .option("-p, --prefix-data <data>", "send DATA before the local input", (value: string) => {
    if (prefixSeen)
      throw new CommanderError(
        QREXEC_EXIT_USAGE,
        "qrx.once",
        "--prefix-data may be given only once",
      );
    prefixSeen = true;
    return value;
  })
  .option("--use-stdin-socket", "fd 0 is a socket used in both directions")
  .exitOverride()
  .addHelpText(
    "after",
    `
Examples (in a lab: qrx run dom0 -- qrexec-client ...):
  qrexec-client -d work user:'echo hello'
  qrexec-client -d vault 'DEFAULT:QUBESRPC test.Add dom0' <<< '11 22'
  qrexec-client -d dom0 'DEFAULT:QUBESRPC test.Echo dom0 name dom0' <<< 'hello'
`,
  );

function usage(code: number): never {
  writeText(code === 0 ? 1 : 2, program.helpInformation());
  process.exit(code);
}

addLogOptions(program);
try {
  program.parse(process.argv);
} catch (error) {
  if (!(error instanceof CommanderError)) throw error;
  // commander has printed the help already.
  if (error.code === "commander.helpDisplayed") process.exit(0);
  // Unknown options share getopt's default case with -h upstream: usage on stdout, exit 0.
  if (error.code === "commander.unknownOption") usage(0);
  if (error.code === "qrx.once") process.exit(QREXEC_EXIT_USAGE);
  usage(QREXEC_EXIT_FATAL);
}

const given = program.opts<{
  d?: string;
  l?: string;
  e?: boolean;
  exitCode: boolean;
  c?: string;
  t?: boolean;
  T?: boolean;
  w: string;
  W?: boolean;
  k?: boolean;
  socketDir?: string;
  prefixData?: string;
  useStdinSocket?: boolean;
}>();
// Read after parsing: --help does not depend on the environment (bin/launch.sh replays it).
const options = {
  ...given,
  socketDir: given.socketDir ?? (process.env.QRX_SOCKET_DIR || DEFAULT_DAEMON_SOCKET_DIR),
};
const command = program.args[0];
if (!options.d || !command) usage(QREXEC_EXIT_FATAL);
if ([options.e, options.l !== undefined, options.c !== undefined].filter(Boolean).length > 1)
  usage(QREXEC_EXIT_FATAL);
if (options.useStdinSocket && options.l !== undefined) {
  process.stderr.write(`${PROGRAM}: --use-stdin-socket cannot be used with -l\n`);
  process.exit(QREXEC_EXIT_USAGE);
}
const timeout = Number(options.w);
if (!/^\d+$/.test(options.w) || !Number.isSafeInteger(timeout)) {
  // Upstream's parse_int: errx(1, "Invalid %s: %s", ...).
  process.stderr.write(`${PROGRAM}: Invalid connection timeout: ${options.w}\n`);
  process.exit(QREXEC_EXIT_FATAL);
}

requireStdio(PROGRAM, 125);
const log = logger(PROGRAM);

const callOptions: Omit<ClientCall, "services"> = {
  socketDir: options.socketDir,
  target: options.d,
  command,
  localCommand: options.l ?? null,
  justExec: options.e === true,
  noExitCode: options.exitCode === false,
  filterStdout: options.t === true,
  filterStderr: options.T === true,
  connectTimeout: timeout,
  prefix: options.prefixData !== undefined ? new TextEncoder().encode(options.prefixData) : null,
  useStdinSocket: options.useStdinSocket === true,
};

// The client's modules load here, after parsing (--help and usage errors need only commander),
// and no top-level await: the start-up bundle is CommonJS (docs/architecture.md, "Start-up").
async function main(): Promise<never> {
  const { connectAllowed, isDom0, runDom0Service, runVmCommand } =
    await import("../client/client.ts");
  const { localServiceContext } = await import("../services/start.ts");
  const services = localServiceContext({ captureStderr: false, log });
  const call: ClientCall = { ...callOptions, services };
  log.debug(`call: -d ${call.target} ${JSON.stringify(command)} through ${call.socketDir}`);
  try {
    if (options.c !== undefined) {
      const parts = options.c.split(",");
      const [ident, sourceName, sourceId] = parts;
      if (
        parts.length !== 3 ||
        !sourceName ||
        !/^\d+$/.test(sourceId ?? "") ||
        Buffer.byteLength(ident!) >= 32
      ) {
        process.stderr.write(
          `${PROGRAM}: -c needs REQID,SRCNAME,SRCID (REQID shorter than 32 bytes)\n`,
        );
        usage(QREXEC_EXIT_FATAL);
      }
      if (sourceName === "dom0" || Number(sourceId) === 0) {
        process.stderr.write(`${PROGRAM}: -c: the source may not be dom0\n`);
        process.exit(QREXEC_EXIT_FATAL);
      }
      if (isDom0(call.target) && ident === "") {
        process.stderr.write(`${PROGRAM}: -c: empty request id\n`);
        process.exit(QREXEC_EXIT_FATAL);
      }
      process.exit(
        await connectAllowed(
          call,
          { ident: ident!, sourceName, sourceDomain: Number(sourceId) },
          options.W === true,
        ),
      );
    }
    if (isDom0(call.target)) {
      if (call.localCommand !== null) {
        process.stderr.write(`${PROGRAM}: -l is not supported for dom0\n`);
        process.exit(QREXEC_EXIT_FATAL);
      }
      await runDom0Service(call);
    }
    const status = await runVmCommand(call);
    if (options.k) await killTarget(call.target);
    process.exit(status);
  } catch (error) {
    if (error instanceof ExitError) {
      process.stderr.write(`${PROGRAM}: ${error.message}\n`);
      process.exit(error.code);
    }
    process.stderr.write(`${PROGRAM}: ${error instanceof Error ? error.message : error}\n`);
    process.exit(QREXEC_EXIT_FATAL);
  }
}

void main();

/** -k: the domain goes when the command is done (upstream uses it for DisposableVMs). */
async function killTarget(target: string): Promise<void> {
  const { adminServiceAt } = await import("../daemon/execute.ts");
  const { DEFAULT_QUBESD_SOCKET } = await import("../admin/qubesd.ts");
  try {
    await adminServiceAt(process.env.QRX_QUBESD_SOCKET || DEFAULT_QUBESD_SOCKET).kill(target);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    log.warn(`-k: cannot kill ${target}: ${reason}`);
  }
}
