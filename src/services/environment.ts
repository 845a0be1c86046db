// The environment and argv a service is started with (§5.5). QREXEC* variables inherited from the
// agent's own environment are dropped so that a service can only see what this call sets.

import type { RequestedTarget, RpcCommand } from "../protocol/cmdline.ts";

/** Inherited QREXEC* variables that survive: the search path and the pid to signal (§6.6). */
const KEPT_QREXEC_VARIABLES = new Set(["QREXEC_SERVICE_PATH", "QREXEC_AGENT_PID"]);

export interface ServiceEnvironmentRequest {
  /**
   * From the parsed command: the descriptor as received, its argument (null without '+'), the
   * source.
   */
  command: Pick<RpcCommand, "descriptor" | "argument" | "source">;
  /** The dom0 form's `name|keyword TARGET` tokens; null in VMs. */
  requestedTarget: RequestedTarget | null;
  /**
   * The data handler's pid, to which the service may send SIGUSR1; kept as inherited when absent.
   */
  agentPid?: number;
}

export function buildServiceEnvironment(
  base: Record<string, string | undefined>,
  request: ServiceEnvironmentRequest,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(base)) {
    if (value === undefined) continue;
    if (name.startsWith("QREXEC") && !KEPT_QREXEC_VARIABLES.has(name)) continue;
    env[name] = value;
  }
  const { command, requestedTarget } = request;
  env.QREXEC_SERVICE_FULL_NAME = command.descriptor;
  env.QREXEC_REMOTE_DOMAIN = command.source;
  if (command.argument !== null) env.QREXEC_SERVICE_ARGUMENT = command.argument;
  env.QREXEC_REQUESTED_TARGET_TYPE = requestedTarget?.type ?? "";
  if (requestedTarget?.type === "name") env.QREXEC_REQUESTED_TARGET = requestedTarget.target;
  if (requestedTarget?.type === "keyword")
    env.QREXEC_REQUESTED_TARGET_KEYWORD = requestedTarget.target;
  if (request.agentPid !== undefined) env.QREXEC_AGENT_PID = String(request.agentPid);
  return env;
}

/** `[path]`, or `[path, argument]` when the argument is non-empty. */
export function serviceArgv(path: string, argument: string | null): string[] {
  return argument ? [path, argument] : [path];
}
