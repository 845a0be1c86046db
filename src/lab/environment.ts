// The environment a process of one lab domain runs with: its domain id and name, its vchan
// directory, its services and trigger socket, its home, and zig-out/bin and bin/ first on PATH
// so `qrexec-client-vm` (in a VM) or `qrexec-client` (in dom0) is the lab's. The agent, the
// services it starts and `qrx run DOMAIN` all get this.

import { BIN_DIR, NATIVE_BIN_DIR } from "../install-paths.ts";
import type { LabLayout } from "./layout.ts";

export { BIN_DIR, NATIVE_BIN_DIR };

/**
 * Variables that say which domain and lab a process belongs to: never inherited from the caller.
 */
const DOMAIN_SPECIFIC = new RegExp(
  "^(QREXEC_|VCHAN_|QUBES_RPC_|QRX_(VCHAN|VCHAN_DIR|AGENT_SOCKET|DIR|SOCKET_DIR|DOMAIN_NAME|" +
    "QUBESD_SOCKET|SYSTEM_INFO_SOCKET|POLICY_DIR|DOMAINS)$)",
);

export function domainEnv(
  layout: LabLayout,
  domain: { name: string; id: number },
  transport: "shm" | "socket",
  base: Record<string, string | undefined> = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(base))
    if (value !== undefined && !DOMAIN_SPECIFIC.test(key)) env[key] = value;
  Object.assign(env, {
    PATH: `${NATIVE_BIN_DIR}:${BIN_DIR}:${env.PATH ?? "/usr/bin:/bin"}`,
    HOME: layout.home(domain.name),
    QRX_DIR: layout.dir,
    QRX_DOMAIN_NAME: domain.name,
    VCHAN_DOMAIN: String(domain.id),
    QRX_VCHAN: transport,
    QRX_VCHAN_DIR: layout.vchanDir,
    VCHAN_SOCKET_DIR: layout.vchanDir,
    QREXEC_SERVICE_PATH: layout.rpcDir(domain.name),
    QUBES_RPC_CONFIG_PATH: layout.rpcConfigDir(domain.name),
  });
  // Bun caches transpiled sources under $HOME; one cache for the lab beats one per domain home.
  env.BUN_RUNTIME_TRANSPILER_CACHE_PATH ??= layout.bunCacheDir;
  if (domain.id === 0) {
    // dom0's tools: qrexec-client finds the daemons, the policy tools the lab's policy and facts.
    Object.assign(env, {
      QRX_SOCKET_DIR: layout.socketDir,
      QREXEC_POLICY_SOCKET: layout.policySocket,
      QRX_QUBESD_SOCKET: layout.adminSocket,
      QRX_SYSTEM_INFO_SOCKET: layout.adminSocket,
      QRX_POLICY_DIR: layout.policyDir,
    });
  } else {
    env.QRX_AGENT_SOCKET = layout.agentSocket(domain.name);
  }
  return env;
}
