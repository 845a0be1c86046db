// Where qrx keeps its runtime state. One state directory per lab; the vchan rendezvous sockets
// live in its `vchan/` subdirectory unless QRX_VCHAN_DIR says otherwise.
import { homedir } from "node:os";
import { join } from "node:path";

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.QRX_DIR) return env.QRX_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "qrx");
  return join(env.HOME ?? homedir(), ".local", "state", "qrx");
}

export function vchanDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.QRX_VCHAN_DIR || join(defaultStateDir(env), "vchan");
}
