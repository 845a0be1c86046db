// Starting the service side of a call (§5.2-§5.9): from a received command to a process, socket
// or TCP connection wired to the pump. Shared by the agent (calls into a VM), the daemon (calls
// into dom0) and qrexec-client (dom0 -> dom0). Two steps, because the per-service config decides
// the stream's flags before the data vchan is attached: `prepareService`, then `startService`
// once the peer said HELLO.

import { closeSync, writeSync } from "node:fs";
import { executableArguments, type ParsedCommand, type RpcCommand } from "../protocol/cmdline.ts";
import {
  QREXEC_EXIT_PROBLEM,
  QREXEC_EXIT_SERVICE_NOT_FOUND,
  QREXEC_EXIT_SUCCESS,
  waitStatus,
} from "../protocol/exit.ts";
import {
  connectTcp,
  connectUnix,
  NativeError,
  spawnSpec,
  type SpawnSpec,
  type Stream,
  type StreamOptions,
} from "../native.ts";
import {
  DEFAULT_SERVICE_CONFIG,
  defaultConfigPath,
  loadServiceConfig,
  type ServiceConfig,
} from "./config.ts";
import { buildServiceEnvironment, serviceArgv } from "./environment.ts";
import { defaultServicePath, findService, type ServiceLocation } from "./lookup.ts";

export interface ServiceContext {
  /** Colon-separated QREXEC_SERVICE_PATH. */
  servicePath: string;
  /** Colon-separated QUBES_RPC_CONFIG_PATH. */
  configPath: string;
  /** The environment services inherit (QREXEC* variables are filtered per call). */
  baseEnv: Record<string, string | undefined>;
  /** What a service may send SIGUSR1 to (QREXEC_AGENT_PID). */
  agentPid: number;
  /** A VM captures service stderr into the call; dom0 leaves it in its log (§6.1). */
  captureStderr: boolean;
  log: (message: string) => void;
}

/**
 * Services of this domain as the environment names them (QREXEC_SERVICE_PATH,
 * QUBES_RPC_CONFIG_PATH).
 */
export function localServiceContext(options: {
  captureStderr: boolean;
  log: (message: string) => void;
}): ServiceContext {
  return {
    servicePath: defaultServicePath(),
    configPath: defaultConfigPath(),
    baseEnv: process.env,
    agentPid: process.pid,
    ...options,
  };
}

/** A service ready to start, or the status the call ends with at once. */
export type PreparedService =
  | {
      kind: "rpc";
      command: RpcCommand;
      location: Exclude<ServiceLocation, { kind: "not-found" } | { kind: "problem" }>;
      config: ServiceConfig;
    }
  /**
   * A shell command: in a VM through `$SHELL -c`; in dom0 (`qrexec-client -c`, §3.6) through
   * `/bin/bash -c` with QREXEC_REMOTE_DOMAIN set to the source.
   */
  | { kind: "legacy"; command: string; shell?: string; remoteDomain?: string }
  | { kind: "failed"; status: number; reason: string };

function failed(status: number, reason: string): PreparedService {
  return { kind: "failed", status, reason };
}

/** Everything decided before the data vchan exists: parse result, config, lookup (§5.2). */
export function prepareService(parsed: ParsedCommand, context: ServiceContext): PreparedService {
  if (parsed.kind === "invalid")
    return failed(QREXEC_EXIT_PROBLEM, `bad command: ${parsed.reason}`);
  if (parsed.kind === "legacy") return { kind: "legacy", command: parsed.command };

  const loaded = loadServiceConfig(parsed.descriptor, context.configPath);
  if (loaded.kind === "error")
    return failed(QREXEC_EXIT_PROBLEM, `service config: ${loaded.reason}`);
  for (const key of loaded.unknownKeys) context.log(`${loaded.path}: unknown key '${key}' ignored`);
  const config = loaded.config;
  if (
    config.forceUser !== null &&
    (config.skipServiceDescriptor || config.exitOnClientEof || config.exitOnServiceEof)
  ) {
    return failed(
      QREXEC_EXIT_PROBLEM,
      `${loaded.path}: force-user cannot be combined with socket-only options`,
    );
  }

  const location = findService(parsed.descriptor, context.servicePath);
  if (location.kind === "not-found") {
    return failed(
      QREXEC_EXIT_SERVICE_NOT_FOUND,
      `service ${parsed.serviceDescriptor} not found in ${context.servicePath}`,
    );
  }
  if (location.kind === "problem") return failed(QREXEC_EXIT_PROBLEM, location.reason);
  if (location.kind === "executable") {
    const socketOnly =
      config.skipServiceDescriptor || config.exitOnClientEof || config.exitOnServiceEof;
    if (socketOnly)
      context.log(`${location.path}: socket-only options ignored for an executable service`);
    const argumentCheck = executableArguments(parsed);
    if (argumentCheck.kind === "invalid") return failed(QREXEC_EXIT_PROBLEM, argumentCheck.reason);
    return {
      kind: "rpc",
      command: parsed,
      location,
      config: {
        ...DEFAULT_SERVICE_CONFIG,
        forceUser: config.forceUser,
        waitForSession: config.waitForSession,
      },
    };
  }
  return { kind: "rpc", command: parsed, location, config };
}

/** The stream flags a prepared service needs (the exit-on-*-eof options of socket services). */
export function serviceStreamFlags(
  prepared: PreparedService,
): Pick<StreamOptions, "exitOnClientEof" | "exitOnServiceEof"> {
  if (prepared.kind !== "rpc") return {};
  return {
    exitOnClientEof: prepared.config.exitOnClientEof,
    exitOnServiceEof: prepared.config.exitOnServiceEof,
  };
}

/**
 * QRX_SERVICE_STDOUT=pipe gives a spawned service its stdout as a pipe instead of upstream's
 * socketpair (§5.5): faster for output written in small pieces (docs/benchmarks.md, "Calls"),
 * but `shutdown(1, ...)` and other socket calls on fd 1 then fail. Stdin stays a socket (SIGUSR1
 * single-socket mode, §6.6). Default `socket`. Read once: a bad value stops the program at start.
 */
export function serviceStdoutPipe(env: Record<string, string | undefined>): boolean {
  const chosen = env.QRX_SERVICE_STDOUT;
  if (chosen === undefined || chosen === "" || chosen === "socket") return false;
  if (chosen === "pipe") return true;
  throw new Error(`QRX_SERVICE_STDOUT must be "socket" or "pipe", not ${JSON.stringify(chosen)}`);
}

const SERVICE_STDOUT_PIPE = serviceStdoutPipe(process.env);

function spawnFailureStatus(error: unknown): number {
  return (error as NodeJS.ErrnoException).code === "ENOENT"
    ? QREXEC_EXIT_SERVICE_NOT_FOUND
    : QREXEC_EXIT_PROBLEM;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function closeAll(fds: number[]): void {
  for (const fd of fds) if (fd >= 0) closeSync(fd);
}

/**
 * The process `launchService` would spawn, for the pump to start the moment the data vchan is
 * connected (`StreamOptions.spawn`) rather than after JS hears of it; null where JS does the
 * starting (a call that fails at once, a socket or TCP service, JUST_EXEC, a program named
 * without its path, a NUL in its strings).
 */
export function pumpSpawn(
  prepared: PreparedService,
  justExec: boolean,
  context: ServiceContext,
): SpawnSpec | null {
  if (justExec || prepared.kind === "failed") return null;
  if (prepared.kind === "rpc" && prepared.location.kind !== "executable") return null;
  const { argv, env } = processSpec(prepared, context);
  if (!argv[0]!.startsWith("/")) return null;
  try {
    const stdio = { stderrPipe: context.captureStderr, stdoutPipe: SERVICE_STDOUT_PIPE };
    return spawnSpec(argv, env, stdio);
  } catch (error) {
    context.log(`${argv[0]} is started by JS: ${describe(error)}`);
    return null;
  }
}

/** A failure of the pump to start `stream`'s service goes to the log; the pump ends the call. */
export function logSpawnFailure(stream: Stream, spawn: SpawnSpec, context: ServiceContext): void {
  void stream.spawned.then((pid) => {
    if (pid >= 0) return;
    const program = new TextDecoder().decode(spawn.block.subarray(0, spawn.block.indexOf(0)));
    context.log(`cannot run ${program}: ${new NativeError(-pid, "").code}`);
  });
}

/** The argv and environment of an executable service or a legacy shell command. */
function processSpec(
  prepared: PreparedService & { kind: "rpc" | "legacy" },
  context: ServiceContext,
): { argv: string[]; env: Record<string, string> } {
  if (prepared.kind === "legacy") {
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(context.baseEnv))
      if (value !== undefined) env[name] = value;
    env.QREXEC_AGENT_PID = String(context.agentPid);
    if (prepared.remoteDomain !== undefined) env.QREXEC_REMOTE_DOMAIN = prepared.remoteDomain;
    const shell = prepared.shell ?? (context.baseEnv.SHELL || "/bin/sh");
    return { argv: [shell, "-c", prepared.command], env };
  }
  const check = executableArguments(prepared.command);
  const requestedTarget = check.kind === "ok" ? check.requestedTarget : null;
  const env = buildServiceEnvironment(context.baseEnv, {
    command: prepared.command,
    requestedTarget,
    agentPid: context.agentPid,
  });
  return { argv: serviceArgv(prepared.location.path, prepared.command.argument), env };
}

/** Connects a socket or TCP service and sends it the service descriptor unless skipped. */
function connectService(prepared: PreparedService & { kind: "rpc" }): number {
  const { location, command, config } = prepared;
  if (location.kind === "executable")
    throw new Error("an executable service is spawned, not connected");
  const fd =
    location.kind === "socket"
      ? connectUnix(location.path)
      : connectTcp(location.host, location.port);
  if (!config.skipServiceDescriptor) {
    // A few hundred bytes into a fresh socket: the kernel takes them without blocking.
    try {
      writeSync(fd, Buffer.from(`${command.socketDescriptor}\0`));
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }
  return fd;
}

/**
 * Starts the prepared service on a connected service-side stream. Returns the child's pid when a
 * process runs (so SIGUSR1 from it can be mapped to this call), else null. Failures end the
 * call with 127 or 125 and the EOFs before it (§5.9); JUST_EXEC sends only the exit code (§5.8).
 */
export function startService(
  stream: Stream,
  prepared: PreparedService,
  justExec: boolean,
  context: ServiceContext,
): number | null {
  return launchService(stream, prepared, justExec, context).pid;
}

/** What `launchService` did: whether the service runs (or ran, for JUST_EXEC), and its pid. */
export interface Launched {
  started: boolean;
  pid: number | null;
}

const NOT_STARTED: Launched = { started: false, pid: null };
const STARTED_WITHOUT_CHILD: Launched = { started: true, pid: null };

/** `startService`, also saying whether the service started (`qrexec-client -E`, §8). */
export function launchService(
  stream: Stream,
  prepared: PreparedService,
  justExec: boolean,
  context: ServiceContext,
): Launched {
  if (prepared.kind === "failed") {
    context.log(prepared.reason);
    stream.finishWith(prepared.status, !justExec);
    return NOT_STARTED;
  }
  if (prepared.kind === "rpc" && prepared.location.kind !== "executable") {
    return launchConnected(stream, prepared, justExec, context);
  }

  const { argv, env } = processSpec(prepared, context);
  if (justExec) {
    try {
      const child = Bun.spawn(argv, {
        stdio: ["ignore", "ignore", context.captureStderr ? "ignore" : "inherit"],
        env,
      });
      child.unref();
    } catch (error) {
      context.log(`cannot run ${argv[0]}: ${describe(error)}`);
      stream.finishWith(spawnFailureStatus(error), false);
      return NOT_STARTED;
    }
    stream.finishWith(QREXEC_EXIT_SUCCESS, false);
    return STARTED_WITHOUT_CHILD;
  }

  let childFds: [number, number, number];
  try {
    childFds = stream.makeServiceStdio(context.captureStderr, SERVICE_STDOUT_PIPE);
  } catch (error) {
    // Out of fds, say: an fd set-up failure is 125 (§5.9, §8), and the agent serves on.
    context.log(`cannot set up the stdio of ${argv[0]}: ${describe(error)}`);
    stream.finishWith(QREXEC_EXIT_PROBLEM, true);
    return NOT_STARTED;
  }
  let child: ReturnType<typeof Bun.spawn>;
  try {
    child = Bun.spawn(argv, {
      stdio: [childFds[0], childFds[1], context.captureStderr ? childFds[2] : "inherit"],
      env,
    });
  } catch (error) {
    closeAll(childFds);
    context.log(`cannot run ${argv[0]}: ${describe(error)}`);
    stream.finishWith(spawnFailureStatus(error), true);
    return NOT_STARTED;
  }
  closeAll(childFds);
  void child.exited.then(() => {
    try {
      stream.localExit(waitStatus(child));
    } catch {
      // The stream already ended (peer gone) and was closed: nothing is waiting for the status.
    }
  });
  return { started: true, pid: child.pid };
}

/** A socket or TCP service: connected, and the connection is its stdin and stdout. */
function launchConnected(
  stream: Stream,
  prepared: PreparedService & { kind: "rpc" },
  justExec: boolean,
  context: ServiceContext,
): Launched {
  let fd: number;
  try {
    fd = connectService(prepared);
  } catch (error) {
    context.log(`cannot connect service ${prepared.command.serviceDescriptor}: ${describe(error)}`);
    stream.finishWith(QREXEC_EXIT_PROBLEM, !justExec);
    return NOT_STARTED;
  }
  if (justExec) {
    closeSync(fd);
    stream.finishWith(QREXEC_EXIT_SUCCESS, false);
  } else {
    stream.setStdio(fd, fd, -1, false);
  }
  return STARTED_WITHOUT_CHILD;
}
