// qrexec-client's calls (§2.3, §2.4, §9): dom0 -> VM through the VM's daemon, dom0 -> dom0 by
// running the service here, and `-c` (connecting a request the policy already allowed).

import { openSync } from "node:fs";
import { ExitError } from "../call/exit-error.ts";
import { callerExitCode, runCaller, startLocalProgram, type LocalProgram } from "../call/caller.ts";
import { Connection } from "../io/connection.ts";
import { parseCommand } from "../protocol/cmdline.ts";
import {
  DEFAULT_USER_PREFIX,
  EXEC_PARAMS_FIXED_BYTES,
  MAX_QREXEC_CMD_LEN,
  MSG_EXEC_CMDLINE,
  MSG_JUST_EXEC,
} from "../protocol/constants.ts";
import {
  QREXEC_EXIT_PROBLEM,
  QREXEC_EXIT_SERVICE_NOT_FOUND,
  QREXEC_EXIT_SUCCESS,
} from "../protocol/exit.ts";
import { DEFAULT_DATA_RING_BYTES } from "../protocol/peer-profile.ts";
import { connectDaemon, requestExec } from "../daemon/daemon-client.ts";
import { executeVmCommand, runInDom0, sourceDaemonAt } from "../daemon/execute.ts";
import { prepareService, type ServiceContext } from "../services/start.ts";
import { buildServiceEnvironment, serviceArgv } from "../services/environment.ts";
import { executableArguments } from "../protocol/cmdline.ts";
import { execProcess, NativeError } from "../native.ts";
import { needsSession, waitForSession } from "../services/wait-for-session.ts";
import { portKey, processCall } from "../trace.ts";

const DOM0_NAMES = new Set(["dom0", "@adminvm", "uuid:00000000-0000-0000-0000-000000000000"]);

export function isDom0(target: string): boolean {
  return DOM0_NAMES.has(target);
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export interface ClientCall {
  socketDir: string;
  target: string;
  command: string;
  localCommand: string | null;
  justExec: boolean;
  noExitCode: boolean;
  filterStdout: boolean;
  filterStderr: boolean;
  /** Seconds; 0 waits forever. */
  connectTimeout: number;
  prefix: Uint8Array | null;
  useStdinSocket: boolean;
  /** dom0's services (for dom0 -> dom0 and `-l QUBESRPC …`). */
  services: ServiceContext;
}

/**
 * dom0 -> dom0 (§2.4): "DEFAULT:QUBESRPC svc+arg src type target", run here, no vchan. The
 * service replaces this process, as upstream's does, so it is what a signal to the client (a
 * SIGSTOP, a SIGTERM) reaches, and its exit status is the client's.
 */
export async function runDom0Service(call: ClientCall): Promise<never> {
  if (!call.command.startsWith(DEFAULT_USER_PREFIX)) {
    throw new ExitError(
      `a command for dom0 must start with ${DEFAULT_USER_PREFIX}`,
      QREXEC_EXIT_PROBLEM,
    );
  }
  const parsed = parseCommand(call.command.slice(DEFAULT_USER_PREFIX.length), { stripUser: false });
  if (parsed.kind !== "rpc")
    throw new ExitError("only QUBESRPC service calls can run in dom0", QREXEC_EXIT_PROBLEM);
  const prepared = prepareService(parsed, call.services);
  if (prepared.kind === "failed") throw new ExitError(prepared.reason, prepared.status);
  if (prepared.kind !== "rpc" || prepared.location.kind !== "executable") {
    throw new ExitError("dom0 -> dom0 calls run executable services only", QREXEC_EXIT_PROBLEM);
  }
  if (needsSession(parsed, prepared)) await waitForSession(parsed.source, call.services);
  const check = executableArguments(parsed);
  const env = buildServiceEnvironment(call.services.baseEnv, {
    command: parsed,
    requestedTarget: check.kind === "ok" ? check.requestedTarget : null,
    agentPid: process.pid,
  });
  const path = prepared.location.path;
  try {
    execProcess(path, serviceArgv(path, parsed.argument), env);
  } catch (error) {
    if (!(error instanceof NativeError)) throw error;
    // ENOENT (the file, or its interpreter) is "not found", anything else a problem (§5.5).
    const status = error.code === "ENOENT" ? QREXEC_EXIT_SERVICE_NOT_FOUND : QREXEC_EXIT_PROBLEM;
    throw new ExitError(`cannot run ${path}: ${error.message} (${error.code})`, status);
  }
}

/** dom0 -> VM (§2.3). */
export async function runVmCommand(call: ClientCall): Promise<number> {
  const trace = processCall(0);
  let daemon: Connection;
  try {
    daemon = await connectDaemon(call.socketDir, call.target);
  } catch (error) {
    throw new ExitError(
      `cannot connect to the qrexec daemon of ${call.target}: ${describe(error)}`,
      QREXEC_EXIT_PROBLEM,
    );
  }
  try {
    let allocated;
    try {
      allocated = await requestExec(
        daemon,
        call.justExec ? MSG_JUST_EXEC : MSG_EXEC_CMDLINE,
        0,
        call.command,
      );
    } catch (error) {
      throw new ExitError(
        `the daemon of ${call.target} refused the command: ${describe(error)}`,
        QREXEC_EXIT_PROBLEM,
      );
    }
    process.env.QREXEC_REMOTE_DOMAIN = call.target;
    trace?.link(portKey(0, allocated.connectDomain, allocated.connectPort));
    trace?.stage("call-allowed", { target: call.target });
    const local: LocalProgram | { stdinFd: number; stdoutFd: number } = call.localCommand
      ? startLocalCommand(call)
      : call.justExec
        ? { stdinFd: 1, stdoutFd: openSync("/dev/null", "r") }
        : call.useStdinSocket
          ? { stdinFd: 0, stdoutFd: 0 }
          : { stdinFd: 1, stdoutFd: 0 };
    let result;
    try {
      result = await runCaller({
        localDomain: 0,
        remoteDomain: allocated.connectDomain,
        port: allocated.connectPort,
        ringBytes: DEFAULT_DATA_RING_BYTES,
        connectTimeoutMs: call.connectTimeout === 0 ? -1 : call.connectTimeout * 1000,
        filterStdout: call.filterStdout,
        filterStderr: call.filterStderr,
        prefix: call.prefix,
        local,
        trace,
      });
    } catch (error) {
      // The dom0 client reports a data vchan that never came as 125 (§8).
      throw new ExitError(describe(error), QREXEC_EXIT_PROBLEM);
    }
    const code = call.noExitCode ? QREXEC_EXIT_SUCCESS : callerExitCode(result, call.target);
    trace?.stage("exit-code", { code });
    return code;
  } finally {
    daemon.close();
  }
}

/** `-l CMD`: a QUBESRPC command runs as a dom0 service, anything else through bash (§9). */
function startLocalCommand(call: ClientCall): LocalProgram {
  const command = call.localCommand!;
  let argv = ["/bin/bash", "-c", command];
  let env: Record<string, string | undefined> = process.env;
  const parsed = parseCommand(command, { stripUser: false });
  if (parsed.kind === "rpc") {
    const prepared = prepareService(parsed, call.services);
    if (prepared.kind === "failed") throw new ExitError(prepared.reason, prepared.status);
    if (prepared.kind !== "rpc" || prepared.location.kind !== "executable") {
      throw new ExitError("-l runs executable services only", QREXEC_EXIT_PROBLEM);
    }
    const check = executableArguments(parsed);
    env = buildServiceEnvironment(call.services.baseEnv, {
      command: parsed,
      requestedTarget: check.kind === "ok" ? check.requestedTarget : null,
      agentPid: process.pid,
    });
    argv = serviceArgv(prepared.location.path, parsed.argument);
  }
  try {
    return startLocalProgram(argv, env);
  } catch (error) {
    throw new ExitError(`cannot run ${argv[0]}: ${describe(error)}`, QREXEC_EXIT_PROBLEM);
  }
}

export interface ConnectRequest {
  ident: string;
  sourceName: string;
  sourceDomain: number;
}

/**
 * `-c REQID,SRCNAME,SRCID`: carry out a call the policy allowed, as upstream's policy tools did
 * before the daemon did it itself (§9 "`-c` in detail"). Into dom0 the command runs here as
 * given, and its status is ours; toward a VM it is forwarded byte for byte, and any failure
 * exits 137 (upstream's quirk, §8).
 */
export async function connectAllowed(
  call: ClientCall,
  request: ConnectRequest,
  waitForEnd: boolean,
): Promise<number> {
  if (isDom0(call.target)) return connectToDom0(call, request);
  if (commandBytes(call.command) > MAX_FORWARDED_COMMAND_BYTES) {
    const length = commandBytes(call.command);
    const limit = MAX_FORWARDED_COMMAND_BYTES;
    throw new ExitError(`the command is ${length} bytes, at most ${limit} fit a message`, 137);
  }
  try {
    const targetConnection = await executeVmCommand({
      socketDir: call.socketDir,
      sourceDomain: request.sourceDomain,
      ident: request.ident,
      target: call.target,
      command: call.command,
      keepTargetConnection: waitForEnd,
      source: sourceDaemonAt(call.socketDir, request.sourceDomain),
    });
    // -W: the target daemon closes this connection when the call's port is released (§2.3).
    if (targetConnection) await targetConnection.closed;
    return QREXEC_EXIT_SUCCESS;
  } catch (error) {
    throw new ExitError(describe(error), 137);
  }
}

/** EXEC_CMDLINE's payload: exec_params, the command, its NUL; the daemon's limit (§7.2). */
const MAX_FORWARDED_COMMAND_BYTES = MAX_QREXEC_CMD_LEN - EXEC_PARAMS_FIXED_BYTES - 1;

function commandBytes(command: string): number {
  return Buffer.byteLength(command, "utf8");
}

/** `-c … -d dom0 CMD`: exit with the status sent to the caller; -E: 0 if the command started. */
async function connectToDom0(call: ClientCall, request: ConnectRequest): Promise<number> {
  const command = call.command.startsWith(DEFAULT_USER_PREFIX)
    ? call.command.slice(DEFAULT_USER_PREFIX.length)
    : call.command;
  let result;
  try {
    result = await runInDom0({
      ident: request.ident,
      sourceName: request.sourceName,
      command,
      context: call.services,
      source: sourceDaemonAt(call.socketDir, request.sourceDomain),
    });
  } catch (error) {
    throw new ExitError(describe(error), QREXEC_EXIT_PROBLEM);
  }
  return call.noExitCode && result.started ? QREXEC_EXIT_SUCCESS : result.status;
}
