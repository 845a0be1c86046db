// wait-for-session in dom0 (§5.6, §9 "`-c` in detail"): before a service whose config sets it
// runs, `qubes.WaitForSession` from dom0's service path runs to completion, with stdin closed
// and QREXEC_REMOTE_DOMAIN set to the caller. Unlike a VM's agent there is no queue: the call
// that needs it waits for it. A failure there is only logged; the service runs anyway.

import type { ParsedCommand } from "../protocol/cmdline.ts";
import { findService } from "./lookup.ts";
import type { PreparedService, ServiceContext } from "./start.ts";

const WAIT_FOR_SESSION_SERVICE = "qubes.WaitForSession";

/** Whether this call waits: a service call configured so, without `nogui:`. */
export function needsSession(parsed: ParsedCommand, prepared: PreparedService): boolean {
  if (parsed.kind !== "rpc" || parsed.nogui) return false;
  return prepared.kind === "rpc" && prepared.config.waitForSession;
}

/** Runs qubes.WaitForSession for `source` and resolves when it has exited, whatever happened. */
export async function waitForSession(source: string, context: ServiceContext): Promise<void> {
  const location = findService(WAIT_FOR_SESSION_SERVICE, context.servicePath);
  if (location.kind !== "executable") {
    const where = context.servicePath;
    context.log(`${WAIT_FOR_SESSION_SERVICE} is not executable in ${where}: not waiting`);
    return;
  }
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(context.baseEnv)) {
    if (value !== undefined) env[name] = value;
  }
  env.QREXEC_REMOTE_DOMAIN = source;
  try {
    // Upstream closes fd 0; Bun cannot start a child without one, so it reads /dev/null (EOF).
    const stdio = { stdin: "ignore", stdout: "inherit", stderr: "inherit" } as const;
    const waiter = Bun.spawn([location.path], { ...stdio, env });
    const status = await waiter.exited;
    if (status === 0) return;
    const how = waiter.signalCode ?? status;
    context.log(`${location.path} exited with ${how}; running the service anyway`);
  } catch (error) {
    context.log(`cannot run ${location.path}: ${error instanceof Error ? error.message : error}`);
  }
}
