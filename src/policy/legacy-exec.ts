// qrexec-policy-exec's legacy 5-argument form (DOMID SOURCE TARGET SERVICE IDENT), as daemons
// before R4.2 ran it: the program does not answer the daemon, it connects an allowed call itself
// by running `qrexec-client -c IDENT,SOURCE,DOMID`, as upstream's AllowResolution.execute did.

import { join } from "node:path";
import { buildDom0ServiceCommand, buildVmServiceCommand } from "../protocol/cmdline.ts";
import type { AllowDecision } from "./decision.ts";
import { ADMIN_VM_NAME } from "./domains.ts";
import { DISPVM_PREFIX } from "./tokens.ts";
import { BIN_DIR } from "../install-paths.ts";

export interface LegacyCall {
  /** The calling domain's id, as the daemon gave it. */
  domainId: string;
  /** The daemon's request id for the call. */
  ident: string;
}

const QREXEC_CLIENT = join(BIN_DIR, "qrexec-client");

/** qrexec-client's arguments for an allowed call, or why this form cannot make it. */
export function legacyClientArgs(
  decision: AllowDecision,
  call: LegacyCall,
): { args: string[] } | { error: string } {
  if (decision.target.startsWith(DISPVM_PREFIX)) {
    // Creating a DisposableVM needs the admin service, which only qrexec-daemon talks to.
    return { error: `${decision.target}: the 5-argument form cannot start a DisposableVM` };
  }
  const source = decision.request.policySource ?? decision.request.source;
  const service = decision.service ?? `${decision.request.service}${decision.request.argument}`;
  const connect = ["-c", `${call.ident},${decision.request.caller},${call.domainId}`, "-E"];
  if (decision.target === ADMIN_VM_NAME) {
    const requestedTarget = decision.requestedTarget;
    const command = buildDom0ServiceCommand({ service, source, requestedTarget });
    return { args: ["-d", ADMIN_VM_NAME, ...connect, command] };
  }
  const command = buildVmServiceCommand({ user: decision.user ?? "DEFAULT", service, source });
  return { args: ["-d", decision.targetUuid ?? decision.target, ...connect, command] };
}

/** Runs qrexec-client for the call; its exit status is the program's. */
export async function connectLegacyCall(args: string[]): Promise<number> {
  const child = Bun.spawn([QREXEC_CLIENT, ...args], { stdio: ["ignore", "inherit", "inherit"] });
  return await child.exited;
}
