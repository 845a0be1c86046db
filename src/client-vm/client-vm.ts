// qrexec-client-vm's call (§10): ask the agent, wait for dom0's answer, then serve the data vchan
// with our stdio or a local program's. Exit status per §8.

import { ExitError } from "../call/exit-error.ts";
import { runCaller, startLocalProgram, type LocalProgram } from "../call/caller.ts";
import { Connection } from "../io/connection.ts";
import { watchSigusr1, type StreamError } from "../native.ts";
import { decodeExecParams } from "../protocol/codec.ts";
import { EXEC_PARAMS_FIXED_BYTES } from "../protocol/constants.ts";
import { clientExitCode, QREXEC_EXIT_FATAL, QREXEC_EXIT_REQUEST_REFUSED } from "../protocol/exit.ts";
import { buildClientTrigger } from "../protocol/validate.ts";
import type { PeerProfile } from "../agent/peer-profile.ts";

/** Data vchan connect timeout on the VM side (§13.16). */
const CONNECT_TIMEOUT_MS = 120_000;

export interface ClientVmCall {
  domain: number;
  agentSocket: string;
  target: string;
  service: string;
  source: string;
  bufferSize: number;
  /** The data side's wire behaviour (version, pump flags); the default profile if absent. */
  profile?: PeerProfile;
  prefix: Uint8Array | null;
  filterStdout: boolean;
  filterStderr: boolean;
  useStdinSocket: boolean;
  /** argv of the local program (path first), or null. */
  localProgram: string[] | null;
  log: (message: string) => void;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs the call and returns the exit code. */
export async function callService(call: ClientVmCall): Promise<number> {
  const trigger = buildClientTrigger({ target: call.target, service: call.service, source: call.source });
  if (trigger.kind === "invalid") throw new ExitError(`invalid service '${call.service}': ${trigger.reason}`, QREXEC_EXIT_FATAL);

  let agent: Connection;
  try {
    agent = await Connection.connect(call.agentSocket);
  } catch (error) {
    throw new ExitError(`cannot connect to the qrexec agent at ${call.agentSocket}: ${describe(error)}`, QREXEC_EXIT_FATAL);
  }
  try {
    agent.write(trigger.message);
    let reply: Uint8Array | null;
    try {
      reply = await agent.read(EXEC_PARAMS_FIXED_BYTES);
    } catch (error) {
      throw new ExitError(`short reply from the qrexec agent: ${describe(error)}`, QREXEC_EXIT_FATAL);
    }
    if (reply === null) throw new ExitError("Request refused", QREXEC_EXIT_REQUEST_REFUSED);
    const { connectDomain, connectPort } = decodeExecParams(reply);
    return await runDataVchan(call, connectDomain, connectPort);
  } finally {
    // Closing the trigger connection tells the agent the call ended (CONNECTION_TERMINATED).
    agent.close();
  }
}

async function runDataVchan(call: ClientVmCall, remoteDomain: number, port: number): Promise<number> {
  // SIGUSR1 asks for single-socket mode (§6.6). The handler goes in before the local program
  // starts: a program that signals at once must not meet the default action (termination). The
  // pump keeps a signal that comes before the stream exists and applies it once the stdio is set.
  watchSigusr1("any");
  // The local program starts once the call is allowed, before the vchan connects (§10 step 3).
  const local = call.localProgram ? startClientProgram(call.localProgram) : call.useStdinSocket ? { stdinFd: 0, stdoutFd: 0 } : { stdinFd: 1, stdoutFd: 0 };
  let result;
  try {
    result = await runCaller({
      localDomain: call.domain,
      remoteDomain,
      port,
      ringBytes: call.bufferSize,
      version: call.profile?.version,
      streamFlags: call.profile?.callerFlags,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      filterStdout: call.filterStdout,
      filterStderr: call.filterStderr,
      prefix: call.prefix,
      local,
    });
  } catch (error) {
    // A connect timeout or a broken vchan: 1, as upstream's handle_vchan_error (§8).
    throw new ExitError(describe(error as StreamError), QREXEC_EXIT_FATAL);
  }
  return clientExitCode(result.remote, result.local);
}

/** Our stdin and stdout go to the program as SAVED_FD_0/1 (and stderr as SAVED_FD_2 on request). */
function startClientProgram(argv: string[]): LocalProgram {
  const env: Record<string, string | undefined> = { ...process.env, SAVED_FD_0: "3", SAVED_FD_1: "4", QREXEC_AGENT_PID: String(process.pid) };
  const saved = [0, 1];
  if (process.env.PASS_LOCAL_STDERR) {
    env.SAVED_FD_2 = "5";
    saved.push(2);
  } else {
    delete env.SAVED_FD_2;
  }
  try {
    return startLocalProgram(argv, env, saved);
  } catch (error) {
    throw new ExitError(`cannot run ${argv[0]}: ${describe(error)}`, QREXEC_EXIT_FATAL);
  }
}
