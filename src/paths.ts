// Where qrx keeps its runtime state. One state directory per lab; the vchan rendezvous sockets
// live in its `vchan/` subdirectory unless QRX_VCHAN_DIR says otherwise. The socket backend
// follows upstream's vchan-socket instead: VCHAN_SOCKET_DIR, by default /var/run/vchan.
import { join } from "./posix-path.ts";
import type { VchanBackendName } from "./constants.ts";

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.QRX_DIR) return env.QRX_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "qrx");
  // node:os only without HOME: `qrx run` loads this module, and node:os costs it ~0.4 ms.
  const home = env.HOME ?? (require("node:os") as typeof import("node:os")).homedir();
  return join(home, ".local", "state", "qrx");
}

export function vchanDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.QRX_VCHAN_DIR || join(defaultStateDir(env), "vchan");
}

/** The vchan transport named by QRX_VCHAN: `shm` (the default) or `socket`. */
export function vchanBackend(env: NodeJS.ProcessEnv = process.env): VchanBackendName {
  const value = env.QRX_VCHAN;
  if (value === undefined || value === "" || value === "shm") return "shm";
  if (value === "socket") return "socket";
  throw new Error(`QRX_VCHAN must be "shm" or "socket", not ${JSON.stringify(value)}`);
}

/** Where `backend`'s vchans meet when no directory is given. */
export function defaultVchanDir(
  backend: VchanBackendName,
  env: NodeJS.ProcessEnv = process.env,
): string {
  return backend === "socket" ? env.VCHAN_SOCKET_DIR || "/var/run/vchan" : vchanDir(env);
}
