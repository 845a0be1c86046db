// qrexec-client-vm's call (§10): ask the agent, wait for dom0's answer, then serve the data vchan
// with our stdio or a local program's. Exit status per §8.

import { basename } from "node:path";
import { getSystemErrorMap } from "node:util";
import { ExitError } from "../call/exit-error.ts";
import { callerExitCode, runCaller, startLocalProgram, type LocalProgram } from "../call/caller.ts";
import { Connection } from "../io/connection.ts";
import type { Stream, StreamError } from "../native.ts";
import { decodeExecParams } from "../protocol/codec.ts";
import { EXEC_PARAMS_FIXED_BYTES } from "../protocol/constants.ts";
import { QREXEC_EXIT_FATAL, QREXEC_EXIT_REQUEST_REFUSED } from "../protocol/exit.ts";
import { buildClientTrigger } from "../protocol/validate.ts";
import type { PeerProfile } from "../protocol/peer-profile.ts";
import { portKey, type CallTrace } from "../trace.ts";

/** Data vchan connect timeout on the VM side (§13.16). */
const CONNECT_TIMEOUT_MS = 120_000;

/** What a call needs of its trigger connection to the agent (§10). */
export interface AgentLink {
  /** The trigger message, whole. */
  send(trigger: Uint8Array): void;
  /** The 8-byte exec_params once dom0 allowed the call; null when the agent closed instead. */
  read(): Promise<Uint8Array | null>;
  /** Ends the call, for the agent: it reports the data vchan terminated. */
  close(): void;
}

/** The agent's trigger socket as an `AgentLink`. */
async function agentSocketLink(path: string): Promise<AgentLink> {
  const connection = await Connection.connect(path);
  return {
    send: (trigger) => connection.write(trigger),
    read: () => connection.read(EXEC_PARAMS_FIXED_BYTES),
    close: () => connection.close(),
  };
}

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
  /**
   * Starts the local program elsewhere than in this process (the agent's client host has the
   * front end start it, in the caller's process). Rejects with an ExitError, as
   * `startClientProgram` throws one.
   */
  startLocal?: (argv: string[]) => Promise<LocalProgram>;
  /**
   * Our stdin, stdout and stderr (default 0, 1 and 2); the call owns them once its stream
   * exists (a stderr other than 2 included).
   */
  stdio?: { input: number; output: number; error: number };
  /** The stream is running with our stdio (for SIGUSR1 delivered by someone else than the pump). */
  onStream?: (stream: Stream) => void;
  /** The agent's own link, when the call runs inside it; else its socket is connected. */
  openAgent?: () => AgentLink;
  /** Ends the call early, as if this process had died: the trigger or data vchan is closed. */
  abort?: AbortSignal;
  trace?: CallTrace | null;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs the call and returns the exit code. */
export async function callService(call: ClientVmCall): Promise<number> {
  const trigger = buildClientTrigger({
    target: call.target,
    service: call.service,
    source: call.source,
  });
  if (trigger.kind === "invalid")
    throw new ExitError(`invalid service '${call.service}': ${trigger.reason}`, QREXEC_EXIT_FATAL);

  if (call.abort?.aborted) throw new ExitError("call aborted", QREXEC_EXIT_FATAL);
  let agent: AgentLink;
  try {
    agent = call.openAgent ? call.openAgent() : await agentSocketLink(call.agentSocket);
  } catch (error) {
    const message = `cannot connect to the qrexec agent at ${call.agentSocket}: ${describe(error)}`;
    throw new ExitError(message, QREXEC_EXIT_FATAL, { cause: error });
  }
  try {
    // Stamped first: an in-process agent takes the trigger (and stamps it) within the send.
    call.trace?.stage("trigger-sent", { target: call.target, service: call.service });
    agent.send(trigger.message);
    let reply: Uint8Array | null;
    const aborted = () => agent.close();
    call.abort?.addEventListener("abort", aborted);
    try {
      reply = await agent.read();
    } catch (error) {
      throw new ExitError(
        `short reply from the qrexec agent: ${describe(error)}`,
        QREXEC_EXIT_FATAL,
      );
    } finally {
      call.abort?.removeEventListener("abort", aborted);
    }
    if (call.abort?.aborted) throw new ExitError("call aborted", QREXEC_EXIT_FATAL);
    if (reply === null) throw new ExitError("Request refused", QREXEC_EXIT_REQUEST_REFUSED);
    const { connectDomain, connectPort } = decodeExecParams(reply);
    call.trace?.link(portKey(call.domain, connectDomain, connectPort)).stage("call-allowed");
    const code = await runDataVchan(call, connectDomain, connectPort);
    call.trace?.stage("exit-code", { code });
    return code;
  } finally {
    // Closing the trigger connection tells the agent the call ended (CONNECTION_TERMINATED).
    agent.close();
  }
}

async function runDataVchan(
  call: ClientVmCall,
  remoteDomain: number,
  port: number,
): Promise<number> {
  // The local program starts once the call is allowed, before the vchan connects (§10 step 3).
  // The pump's "stdin" is the local side's: where the remote output goes.
  const { input, output, error } = call.stdio ?? { input: 0, output: 1, error: 2 };
  const start = call.startLocal ?? startClientProgram;
  const local = call.localProgram
    ? await start(call.localProgram)
    : { stdinFd: call.useStdinSocket ? input : output, stdoutFd: input };
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
      remoteStderrFd: error === 2 ? undefined : error,
      onStream: call.onStream,
      abort: call.abort,
      trace: call.trace,
    });
  } catch (error) {
    // A connect timeout or a broken vchan: 1, as upstream's handle_vchan_error (§8).
    throw new ExitError(describe(error as StreamError), QREXEC_EXIT_FATAL, { cause: error });
  }
  return callerExitCode(result, call.target);
}

/**
 * Why a local program could not be started, in the words of Bun's spawn (which the Bun CLI
 * reports), from the errno a native front end sends.
 */
export function spawnFailure(program: string, errno: number): string {
  const [name, message] = getSystemErrorMap().get(-errno) ?? [`errno ${errno}`, "unknown error"];
  if (name === "ENOENT" && !program.includes("/"))
    return `Executable not found in $PATH: "${program}"`;
  // Bun names the program by the argv[0] it is given, its base name (`startLocalProgram`).
  return `${name}: ${message}, posix_spawn '${basename(program)}'`;
}

/** Our stdin and stdout go to the program as SAVED_FD_0/1 (and stderr as SAVED_FD_2 on request). */
async function startClientProgram(argv: string[]): Promise<LocalProgram> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    SAVED_FD_0: "3",
    SAVED_FD_1: "4",
    QREXEC_AGENT_PID: String(process.pid),
  };
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
