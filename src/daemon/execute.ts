// Carrying out an allowed call (§2.1 step 4, §2.2): what upstream's policy child does, here run
// in the daemon's own process (and by `qrexec-client -c`).

import { qubesdCallText } from "../admin/qubesd.ts";
import type { Connection } from "../io/connection.ts";
import { StreamKind, Vchan } from "../native.ts";
import {
  buildDom0ServiceCommand,
  buildVmServiceCommand,
  parseCommand,
  type ParsedCommand,
} from "../protocol/cmdline.ts";
import { fieldText, type ExecParams, type FixedField } from "../protocol/codec.ts";
import { MSG_EXEC_CMDLINE, QREXEC_PROTOCOL_VERSION } from "../protocol/constants.ts";
import {
  launchService,
  prepareService,
  pumpSpawn,
  logSpawnFailure,
  serviceStreamFlags,
  type PreparedService,
  type ServiceContext,
} from "../services/start.ts";
import { needsSession, waitForSession } from "../services/wait-for-session.ts";
import { connectDaemon, requestExec, requestServiceConnect } from "./daemon-client.ts";
import type { SpareConnections } from "./spare-connections.ts";
import { portKey, traceCall, traceKeyed, tracing, triggerKey } from "../trace.ts";

/** The daemon's fixed VM -> dom0 connection timeout (§13.16). */
const DOM0_CONNECT_TIMEOUT_MS = 5_000;

/**
 * The calling VM's daemon, told to connect the caller (SERVICE_CONNECT). A daemon carrying out its
 * own VM's request does this in-process; `qrexec-client -c` goes through the socket.
 */
export interface SourceDaemon {
  /** With port 0 (calls into dom0) the daemon allocates the port and returns it. */
  serviceConnect(params: ExecParams, ident: FixedField): Promise<ExecParams | null>;
}

/**
 * The source daemon reached through its socket (`qrexec-client -c`). A forwarded CONNECT gets
 * no reply and the daemon never closes the connection first (it keeps serving its clients), so
 * we close it once the request is written.
 */
export function sourceDaemonAt(socketDir: string, domain: number): SourceDaemon {
  return {
    async serviceConnect(params, ident) {
      const connection = await connectDaemon(socketDir, String(domain));
      try {
        const allocated = await requestServiceConnect(connection, params, ident);
        if (allocated === null) {
          connection.end();
          await connection.closed;
        }
        return allocated;
      } finally {
        connection.close();
      }
    },
  };
}

export interface VmCall {
  socketDir: string;
  /** The calling VM's id and name, and the request's ident. */
  sourceDomain: number;
  sourceName: string;
  ident: FixedField;
  /** Name or `uuid:…` of the target's daemon socket. */
  target: string;
  user: string;
  service: string;
  /** Keep the target daemon's connection: it closes when the call ends (DispVMs, `-W`). */
  keepTargetConnection?: boolean;
  source: SourceDaemon;
}

/** qubesd's calls the daemon makes (§7.6); the lab's admin service answers them. */
export interface AdminService {
  /** `admin.vm.CreateDisposable` on a template (name or `uuid:…`); the new DispVM's `uuid:…`. */
  createDisposable(template: string): Promise<string>;
  start(domain: string): Promise<void>;
  kill(domain: string): Promise<void>;
}

export function adminServiceAt(socketPath: string): AdminService {
  return {
    async createDisposable(template) {
      const reply = await qubesdCallText(socketPath, "admin.vm.CreateDisposable", template, {
        payload: "uuid",
      });
      // §7.6: the reply is checked to be exactly "uuid:" and a 36-character UUID.
      if (!/^uuid:[0-9a-f-]{36}$/.test(reply))
        throw new Error(
          `admin.vm.CreateDisposable answered ` +
            `${JSON.stringify(reply.slice(0, 64))}, not uuid:<uuid>`,
        );
      return reply;
    },
    async start(domain) {
      await qubesdCallText(socketPath, "admin.vm.Start", domain);
    },
    async kill(domain) {
      await qubesdCallText(socketPath, "admin.vm.Kill", domain);
    },
  };
}

function notReachable(target: string, error: unknown): Error {
  const code = (error as { code?: string }).code;
  if (code === "ENOENT" || code === "ECONNREFUSED")
    return new Error(`the daemon of ${target} is not listening (${code}): is ${target} running?`);
  return error instanceof Error ? error : new Error(String(error));
}

function isNotListening(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code === "ENOENT" || code === "ECONNREFUSED";
}

/**
 * VM -> VM: ask the target's daemon to start the service (it allocates the port), then tell the
 * source's daemon to connect the caller. Resolves once the source daemon has the CONNECT, with
 * the target daemon's connection when asked to keep it. A target whose daemon is not listening
 * is started first when the policy said autostart (§7.6).
 */
export async function executeVm(
  call: VmCall & Pick<VmCommand, "autostart" | "spares">,
): Promise<Connection | null> {
  const command = buildVmServiceCommand({
    user: call.user,
    service: call.service,
    source: call.sourceName,
  });
  return executeVmCommand({ ...call, command });
}

export interface VmCommand {
  socketDir: string;
  sourceDomain: number;
  ident: FixedField;
  target: string;
  /** Sent byte for byte in EXEC_CMDLINE (`qrexec-client -c … -d VM CMD`, §9). */
  command: string;
  keepTargetConnection?: boolean;
  source: SourceDaemon;
  autostart?: { admin: AdminService } | null;
  /** Target daemon connections greeted ahead (a daemon's own calls); none if absent. */
  spares?: SpareConnections;
}

/** `executeVm` with the command as given. */
export async function executeVmCommand(call: VmCommand): Promise<Connection | null> {
  const spares = call.keepTargetConnection ? undefined : call.spares;
  const targetDaemon = spares?.take(call.target) ?? (await connectTarget(call));
  let allocated;
  try {
    allocated = await requestExec(targetDaemon, MSG_EXEC_CMDLINE, call.sourceDomain, call.command);
  } catch (error) {
    targetDaemon.close();
    throw error;
  }
  if (!call.keepTargetConnection) targetDaemon.close();
  try {
    await call.source.serviceConnect(allocated, call.ident);
  } catch (error) {
    targetDaemon.close();
    throw error;
  }
  // Once this call's messages are out: the spare's connect is not on its path.
  spares?.refill(call.target);
  return call.keepTargetConnection ? targetDaemon : null;
}

async function connectTarget(
  call: Pick<VmCommand, "socketDir" | "target" | "autostart">,
): Promise<Connection> {
  try {
    return await connectDaemon(call.socketDir, call.target);
  } catch (error) {
    if (!call.autostart || !isNotListening(error)) throw notReachable(call.target, error);
    await call.autostart.admin.start(call.target);
    try {
      return await connectDaemon(call.socketDir, call.target);
    } catch (again) {
      throw notReachable(call.target, again);
    }
  }
}

export interface Dom0Call {
  socketDir: string;
  sourceDomain: number;
  sourceName: string;
  ident: FixedField;
  service: string;
  requestedTarget: string;
  /** dom0's services (QREXEC_SERVICE_PATH of dom0); their stderr stays in our log. */
  context: ServiceContext;
  source: SourceDaemon;
}

/**
 * VM -> dom0 (§2.2): the command "QUBESRPC svc[+] source name|keyword target" built from the
 * allowed request, run as `runInDom0` does. Resolves with the service's status.
 */
export async function runToDom0(call: Dom0Call): Promise<number> {
  const { service, sourceName, requestedTarget, ident, context, source } = call;
  const command = buildDom0ServiceCommand({ service, source: sourceName, requestedTarget });
  return (await runInDom0({ ident, sourceName, command, context, source })).status;
}

export interface Dom0Command {
  ident: FixedField;
  /** The calling VM: QREXEC_REMOTE_DOMAIN of a shell command, and who waits for the session. */
  sourceName: string;
  /** Run as given (§3.6): a QUBESRPC service call with its own tokens, or a shell command. */
  command: string;
  context: ServiceContext;
  source: SourceDaemon;
}

export interface Dom0Result {
  /** What was sent as EXIT_CODE: the service's status, or 125/127 when it could not start. */
  status: number;
  /** Whether the service (or shell command) started at all (`qrexec-client -E`, §8). */
  started: boolean;
}

/**
 * A call into dom0: the source's daemon allocates the port and connects the caller; we connect
 * to the caller's vchan as the service side, HELLO after the caller's (§4.2), and run the command
 * here, its stderr left in our log. A failure before the service starts still goes to the caller
 * (STDERR EOF, STDOUT EOF, EXIT_CODE 125|127) once the vchan is up.
 */
export async function runInDom0(call: Dom0Command): Promise<Dom0Result> {
  const allocated = await call.source.serviceConnect(
    { connectDomain: 0, connectPort: 0 },
    call.ident,
  );
  if (allocated === null) throw new Error("daemon allocated no port");
  const parsed = parseCommand(call.command, { stripUser: false });
  const prepared = prepareDom0(parsed, call.sourceName, call.context);
  if (needsSession(parsed, prepared)) await waitForSession(call.sourceName, call.context);
  const { connectDomain: remoteDomain, connectPort: port } = allocated;
  const trace = traceCall(0)?.link(portKey(0, remoteDomain, port));
  trace?.stage("exec-request", { command: call.command.slice(0, 80) });
  // Started by the pump the moment the vchan connects, where it can (as in the agent).
  const spawn = pumpSpawn(prepared, false, call.context);
  const vchan = Vchan.clientAsync({ localDomain: 0, remoteDomain, port });
  const stream = vchan.attach({
    kind: StreamKind.DataService,
    version: QREXEC_PROTOCOL_VERSION,
    sendFirst: false,
    connectTimeoutMs: DOM0_CONNECT_TIMEOUT_MS,
    stderrEofFirst: true,
    ...serviceStreamFlags(prepared),
    ...(spawn && { spawn }),
  });
  try {
    const byPump = spawn !== null;
    if (spawn) logSpawnFailure(stream, spawn, call.context);
    // `finished` rejects when the caller never connects; `connected` alone would wait forever.
    await Promise.race([stream.connected, stream.finished]);
    trace?.stage("data-connected", {}, stream.connectedAt);
    const started = byPump
      ? (await stream.spawned) > 0
      : launchService(stream, prepared, false, call.context).started;
    trace?.stage("service-spawned", {}, stream.spawnedAt);
    const status = await stream.finished;
    trace?.pumpStages(stream.pumpMarks).stage("teardown");
    return { status, started };
  } finally {
    stream.close();
  }
}

/** A service as in a VM; a shell command through /bin/bash with the source named (§3.6). */
function prepareDom0(
  parsed: ParsedCommand,
  sourceName: string,
  context: ServiceContext,
): PreparedService {
  if (parsed.kind !== "legacy") return prepareService(parsed, context);
  return { kind: "legacy", command: parsed.command, shell: "/bin/bash", remoteDomain: sourceName };
}

function identText(ident: FixedField): string {
  return typeof ident === "string" ? ident : fieldText(ident);
}

/**
 * A call to `@dispvm:TEMPLATE` (§7.6): create a DisposableVM from the template, start it, run the
 * call in it, and kill it once its daemon closes our connection (the call's port was released).
 * Resolves when the call is set up; the kill happens later, in the background.
 */
export async function executeDispvm(
  call: Omit<VmCall, "target" | "keepTargetConnection"> & {
    template: string;
    admin: AdminService;
    log: (message: string) => void;
  },
): Promise<string> {
  const key = tracing ? triggerKey(call.sourceDomain, identText(call.ident)) : "";
  const dispvm = await call.admin.createDisposable(call.template);
  traceKeyed(0, "dispvm-created", [key], { dispvm });
  const kill = () =>
    call.admin
      .kill(dispvm)
      .catch((error: unknown) =>
        call.log(
          `admin.vm.Kill ${dispvm}: ${error instanceof Error ? error.message : String(error)}`,
        ),
      );
  let targetDaemon: Connection | null;
  try {
    await call.admin.start(dispvm);
    traceKeyed(0, "dispvm-started", [key], { dispvm });
    targetDaemon = await executeVm({ ...call, target: dispvm, keepTargetConnection: true });
  } catch (error) {
    await kill();
    throw error;
  }
  void targetDaemon!.closed.then(kill);
  return dispvm;
}
