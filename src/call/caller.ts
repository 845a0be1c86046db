// The calling side of a data vchan, shared by qrexec-client-vm and qrexec-client: the vchan
// server, the pump's client stream over our stdio or a local program's, and the two statuses the
// exit code is made of (§6.2 step 11, §8).

import { closeSync } from "node:fs";
import { basename } from "node:path";
import {
  dupFd,
  socketPair,
  StreamKind,
  Vchan,
  type Stream,
  type StreamOptions,
} from "../native.ts";
import { QREXEC_PROTOCOL_VERSION } from "../protocol/constants.ts";
import { clientExitCode, waitStatus } from "../protocol/exit.ts";
import { ExitError } from "./exit-error.ts";
import type { CallTrace } from "../trace.ts";

export interface LocalProgram {
  /** Our ends of its stdin and stdout socketpairs (the pump owns them once attached). */
  stdinFd: number;
  stdoutFd: number;
  exited: Promise<number>;
  /**
   * Its pid, when another process started it (a hosted call's front end): the pump names it
   * the stream's child, and so holds a stdout EOF for a SIGUSR1 as it does for any child.
   */
  pid?: number;
  /**
   * Its SIGUSR1 goes to that front end, which sends it on as a byte that comes round through
   * this process's JS: the stream is attached with `frontEndSignals` and given
   * `onFrontEndSync`, which must lead to `Stream.frontEndSynced`.
   */
  frontEnd?: { onSync: (stream: Stream) => void };
}

/**
 * Starts `argv` with socketpairs as stdin and stdout (so SIGUSR1 single-socket mode works) and
 * our stderr. `extraFds` become its fds 3, 4, ... Throws when it cannot be started.
 */
export function startLocalProgram(
  argv: string[],
  env: Record<string, string | undefined>,
  extraFds: number[] = [],
): LocalProgram {
  const [ourStdin, childStdin] = socketPair();
  const [ourStdout, childStdout] = socketPair();
  // Bun's spawn reads a low fd number in the extra slots as "the same fd" (0 at index 3 gave the
  // child our fd 3): copies above 2 go in instead.
  const extra = extraFds.map((fd) => (fd <= 2 ? dupFd(fd) : fd));
  let child;
  try {
    child = Bun.spawn(argv, {
      stdio: [childStdin, childStdout, "inherit", ...extra] as never,
      env,
      argv0: basename(argv[0]!),
    });
  } catch (error) {
    for (const fd of [ourStdin, ourStdout]) closeSync(fd);
    throw error;
  } finally {
    closeSync(childStdin);
    closeSync(childStdout);
    extra.forEach((fd, index) => fd !== extraFds[index] && closeSync(fd));
  }
  return {
    stdinFd: ourStdin,
    stdoutFd: ourStdout,
    exited: child.exited.then(() => waitStatus(child)),
  };
}

export interface CallerOptions {
  localDomain: number;
  remoteDomain: number;
  port: number;
  /** Minimum ring size in each direction. */
  ringBytes: number;
  /** Our protocol version (default: the newest); a mirage-profile caller says 3. */
  version?: number;
  /** Extra pump flags (a mirage-profile caller's bug knob). */
  streamFlags?: Pick<StreamOptions, "mirageChunkBug">;
  /** Negative: no limit. */
  connectTimeoutMs: number;
  filterStdout: boolean;
  filterStderr: boolean;
  prefix: Uint8Array | null;
  /** The local program, or the fds remote output goes to and local input comes from. */
  local: LocalProgram | { stdinFd: number; stdoutFd: number };
  /** Where the remote stderr goes (the stream owns it) instead of our fd 2. */
  remoteStderrFd?: number;
  /** Called once the stream owns the local fds. */
  onStream?: (stream: Stream) => void;
  /** Closes the stream (the call then fails, as when the vchan breaks). */
  abort?: AbortSignal;
  trace?: CallTrace | null;
}

export interface CallerResult {
  /** The remote EXIT_CODE, or null when the vchan closed before one arrived. */
  remote: number | null;
  /** The local program's status, or null without one. */
  local: number | null;
}

/**
 * The caller's exit status (§8). A vchan that closed before the remote status came (the target's
 * agent or domain died, §6.9) is still 255, as upstream, and said, as upstream's "vchan
 * connection closed early".
 */
export function callerExitCode(result: CallerResult, target: string): number {
  if (result.remote !== null) return clientExitCode(result.remote, result.local);
  const why = `vchan connection closed early: ${target} sent no exit status`;
  throw new ExitError(why, clientExitCode(null, result.local));
}

/** Serves the data vchan as the caller until the end; rejects with a StreamError on failure. */
export async function runCaller(options: CallerOptions): Promise<CallerResult> {
  const program = "exited" in options.local ? options.local : null;
  const vchan = Vchan.server({
    localDomain: options.localDomain,
    remoteDomain: options.remoteDomain,
    port: options.port,
    readMin: options.ringBytes,
    writeMin: options.ringBytes,
  });
  const stream = vchan.attach({
    kind: StreamKind.DataClient,
    version: options.version ?? QREXEC_PROTOCOL_VERSION,
    sendFirst: true,
    connectTimeoutMs: options.connectTimeoutMs,
    filterStdout: options.filterStdout,
    filterStderr: options.filterStderr,
    frontEndSignals: program?.frontEnd !== undefined,
    ...options.streamFlags,
  });
  const frontEnd = program?.frontEnd;
  if (frontEnd) stream.onFrontEndSync = () => frontEnd.onSync(stream);
  try {
    if (options.prefix && options.prefix.length > 0) stream.setPrefix(options.prefix);
    // Before the stdio: once that is set the pump thread may write remote stderr, to our fd 2
    // if nothing else is set yet (a hosted call's stderr would land in the agent's log).
    if (options.remoteStderrFd !== undefined) stream.setRemoteStderr(options.remoteStderrFd);
    stream.setStdio(options.local.stdinFd, options.local.stdoutFd, -1, program !== null);
    if (program?.pid !== undefined) stream.setChild(program.pid);
    options.onStream?.(stream);
    void stream.connected.then(() =>
      options.trace?.stage("data-connected", {}, stream.connectedAt),
    );
    if (options.abort?.aborted) stream.close();
    options.abort?.addEventListener("abort", () => stream.close(), { once: true });
    let localStatus: number | null = null;
    void program?.exited.then((status) => {
      localStatus = status;
      try {
        stream.localExit(status);
      } catch {
        // The stream already ended (the peer is gone): nothing waits for the status.
      }
    });
    const remote = await stream.finished;
    options.trace?.pumpStages(stream.pumpMarks).stage("teardown");
    if (program && localStatus === null) localStatus = await program.exited;
    return { remote: remote === -1 ? null : remote, local: localStatus };
  } finally {
    stream.close();
  }
}
