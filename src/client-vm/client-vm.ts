// qrexec-client-vm's call (§10): ask the agent, wait for dom0's answer, then serve the data vchan
// with our stdio or a local program's. Exit status per §8.

import { basename } from "node:path";
import { Connection } from "../io/connection.ts";
import { onSigusr1, socketPair, StreamKind, StreamError, Vchan, type Stream } from "../native.ts";
import { decodeExecParams } from "../protocol/codec.ts";
import { EXEC_PARAMS_FIXED_BYTES, QREXEC_PROTOCOL_VERSION } from "../protocol/constants.ts";
import {
  clientExitCode,
  QREXEC_EXIT_FATAL,
  QREXEC_EXIT_REQUEST_REFUSED,
  waitStatus,
} from "../protocol/exit.ts";
import { buildClientTrigger } from "../protocol/validate.ts";
import { closeSync } from "node:fs";

/** Data vchan connect timeout on the VM side (§13.16). */
const CONNECT_TIMEOUT_MS = 120_000;

export interface ClientVmCall {
  domain: number;
  agentSocket: string;
  target: string;
  service: string;
  source: string;
  bufferSize: number;
  prefix: Uint8Array | null;
  filterStdout: boolean;
  filterStderr: boolean;
  useStdinSocket: boolean;
  /** argv of the local program (path first), or null. */
  localProgram: string[] | null;
  log: (message: string) => void;
}

/** A problem that ends the call with `code` after printing `message`. */
export class CallError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs the call and returns the exit code. */
export async function callService(call: ClientVmCall): Promise<number> {
  const trigger = buildClientTrigger({ target: call.target, service: call.service, source: call.source });
  if (trigger.kind === "invalid") throw new CallError(`invalid service '${call.service}': ${trigger.reason}`, QREXEC_EXIT_FATAL);

  let agent: Connection;
  try {
    agent = await Connection.connect(call.agentSocket);
  } catch (error) {
    throw new CallError(`cannot connect to the qrexec agent at ${call.agentSocket}: ${describe(error)}`, QREXEC_EXIT_FATAL);
  }
  try {
    agent.write(trigger.message);
    let reply: Uint8Array | null;
    try {
      reply = await agent.read(EXEC_PARAMS_FIXED_BYTES);
    } catch (error) {
      throw new CallError(`short reply from the qrexec agent: ${describe(error)}`, QREXEC_EXIT_FATAL);
    }
    if (reply === null) throw new CallError("Request refused", QREXEC_EXIT_REQUEST_REFUSED);
    const { connectDomain, connectPort } = decodeExecParams(reply);
    return await runDataVchan(call, connectDomain, connectPort);
  } finally {
    // Closing the trigger connection tells the agent the call ended (CONNECTION_TERMINATED).
    agent.close();
  }
}

async function runDataVchan(call: ClientVmCall, remoteDomain: number, port: number): Promise<number> {
  // SIGUSR1 asks for single-socket mode (§6.6). The handler goes in before the local program
  // starts: a program that signals at once must not meet the default action (termination).
  let configured: Stream | null = null;
  let singleSocketWanted = false;
  const singleSocket = () => {
    singleSocketWanted = true;
    try {
      configured?.singleSocket();
    } catch {}
  };
  onSigusr1(singleSocket);
  // The local program starts once the call is allowed, before the vchan connects (§10 step 3).
  const local = call.localProgram ? startLocalProgram(call.localProgram) : null;
  const vchan = Vchan.server({ localDomain: call.domain, remoteDomain, port, readMin: call.bufferSize, writeMin: call.bufferSize });
  const stream = vchan.attach({
    kind: StreamKind.DataClient,
    version: QREXEC_PROTOCOL_VERSION,
    sendFirst: true,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    filterStdout: call.filterStdout,
    filterStderr: call.filterStderr,
  });
  try {
    if (call.prefix && call.prefix.length > 0) stream.setPrefix(call.prefix);
    if (local) stream.setStdio(local.stdinFd, local.stdoutFd, -1, true);
    else if (call.useStdinSocket) stream.setStdio(0, 0, -1, false);
    else stream.setStdio(1, 0, -1, false);
    // Only once the stdio is set: single-socket mode switches the fds given here.
    configured = stream;
    if (singleSocketWanted) singleSocket();
    let localStatus: number | null = null;
    void local?.exited.then((status) => {
      localStatus = status;
      try {
        stream.localExit(status);
      } catch {}
    });
    let remote: number;
    try {
      remote = await stream.finished;
    } catch (error) {
      // A connect timeout or a broken vchan: 1, as upstream's handle_vchan_error (§8).
      throw new CallError(describe(error as StreamError), QREXEC_EXIT_FATAL);
    }
    if (local && localStatus === null) localStatus = await local.exited;
    return clientExitCode(remote === -1 ? null : remote, localStatus);
  } finally {
    stream.close();
  }
}

/**
 * The local program gets socketpairs as stdin and stdout (so SIGUSR1 single-socket mode works),
 * our stdin and stdout as SAVED_FD_0/1, and our stderr untouched (§10 step 3).
 */
function startLocalProgram(argv: string[]): { stdinFd: number; stdoutFd: number; exited: Promise<number> } {
  const [ourStdin, childStdin] = socketPair();
  const [ourStdout, childStdout] = socketPair();
  const env: Record<string, string | undefined> = { ...process.env, SAVED_FD_0: "3", SAVED_FD_1: "4", QREXEC_AGENT_PID: String(process.pid) };
  const stdio: Array<number | "inherit"> = [childStdin, childStdout, "inherit", 0, 1];
  if (process.env.PASS_LOCAL_STDERR) {
    env.SAVED_FD_2 = "5";
    stdio.push(2);
  } else {
    delete env.SAVED_FD_2;
  }
  let child;
  try {
    child = Bun.spawn(argv, { stdio: stdio as never, env, argv0: basename(argv[0]!) });
  } catch (error) {
    for (const fd of [ourStdin, childStdin, ourStdout, childStdout]) closeSync(fd);
    throw new CallError(`cannot run ${argv[0]}: ${describe(error)}`, QREXEC_EXIT_FATAL);
  }
  closeSync(childStdin);
  closeSync(childStdout);
  return { stdinFd: ourStdin, stdoutFd: ourStdout, exited: child.exited.then(() => waitStatus(child)) };
}
