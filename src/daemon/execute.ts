// Carrying out an allowed call (§2.1 step 4, §2.2): what upstream's policy child does, here run
// in the daemon's own process (and by `qrexec-client -c`).

import type { Connection } from "../io/connection.ts";
import { StreamKind, Vchan } from "../native.ts";
import { buildDom0ServiceCommand, buildVmServiceCommand, parseCommand } from "../protocol/cmdline.ts";
import type { ExecParams, FixedField } from "../protocol/codec.ts";
import { MSG_EXEC_CMDLINE, QREXEC_PROTOCOL_VERSION } from "../protocol/constants.ts";
import { prepareService, serviceStreamFlags, startService, type ServiceContext } from "../services/start.ts";
import { connectDaemon, requestExec, requestServiceConnect } from "./daemon-client.ts";

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

/** The source daemon reached through its socket. */
export function sourceDaemonAt(socketDir: string, domain: number): SourceDaemon {
  return {
    async serviceConnect(params, ident) {
      const connection = await connectDaemon(socketDir, String(domain));
      try {
        const allocated = await requestServiceConnect(connection, params, ident);
        // Without a reply, the daemon's close says it has read the request.
        if (allocated === null) await connection.closed;
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

/**
 * VM -> VM: ask the target's daemon to start the service (it allocates the port), then tell the
 * source's daemon to connect the caller. Resolves once the source daemon has the CONNECT, with
 * the target daemon's connection when asked to keep it.
 */
export async function executeVm(call: VmCall): Promise<Connection | null> {
  const command = buildVmServiceCommand({ user: call.user, service: call.service, source: call.sourceName });
  const targetDaemon = await connectDaemon(call.socketDir, call.target);
  let allocated;
  try {
    allocated = await requestExec(targetDaemon, MSG_EXEC_CMDLINE, call.sourceDomain, command);
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
  return call.keepTargetConnection ? targetDaemon : null;
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
 * VM -> dom0: the source's daemon allocates the port and connects the caller; we connect to the
 * caller's vchan as the service side, HELLO after the caller's (§4.2), and run the service here.
 * Resolves with the service's status when the call ends.
 */
export async function runToDom0(call: Dom0Call): Promise<number> {
  const command = buildDom0ServiceCommand({ service: call.service, source: call.sourceName, requestedTarget: call.requestedTarget });
  const allocated = await call.source.serviceConnect({ connectDomain: 0, connectPort: 0 }, call.ident);
  if (allocated === null) throw new Error("daemon allocated no port");
  const prepared = prepareService(parseCommand(command, { stripUser: false }), call.context);
  const vchan = Vchan.clientAsync({ localDomain: 0, remoteDomain: allocated.connectDomain, port: allocated.connectPort });
  const stream = vchan.attach({
    kind: StreamKind.DataService,
    version: QREXEC_PROTOCOL_VERSION,
    sendFirst: false,
    connectTimeoutMs: DOM0_CONNECT_TIMEOUT_MS,
    ...serviceStreamFlags(prepared),
  });
  try {
    // `finished` rejects when the caller never connects; `connected` alone would wait forever.
    await Promise.race([stream.connected, stream.finished]);
    startService(stream, prepared, false, call.context);
    return await stream.finished;
  } finally {
    stream.close();
  }
}
