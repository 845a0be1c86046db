// The README's "two-domain qrexec system by hand" for `qrx bench latency`: two agents and two
// daemons started directly (no lab, no policy daemon), so every call runs the policy program
// (`-p qrexec-policy-exec`), and the caller names a non-default --agent-socket.

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BIN_DIR, NATIVE_BIN_DIR } from "../lab/environment.ts";

export interface ByHandSystem {
  /** The caller's environment and argv prefix: `qrexec-client-vm --agent-socket=... `. */
  callEnv: Record<string, string>;
  clientArgv: string[];
  /**
   * The policy program run as the daemons run it for the same call (`qrexec-policy-exec --
   * work vault test.Echo`): its own run time. It prints `POLICY_ANSWER`.
   */
  policyArgv: string[];
  stop: () => Promise<void>;
}

const WORK = 2;
const VAULT = 3;

function files(dir: string): Record<string, string> {
  const rpc = join(dir, "vault-rpc");
  mkdirSync(rpc, { recursive: true });
  mkdirSync(join(dir, "run"));
  mkdirSync(join(dir, "policy"));
  writeFileSync(join(rpc, "test.Echo"), "#!/bin/sh\nexec cat\n", { mode: 0o755 });
  writeFileSync(join(dir, "policy", "30-test.policy"), "test.Echo * @anyvm @anyvm allow\n");
  writeFileSync(join(dir, "domains.toml"), "[domains.work]\n[domains.vault]\n");
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^(QRX_|QREXEC_|VCHAN_)/.test(key)) env[key] = value;
  }
  if (process.env.QRX_TRACE) env.QRX_TRACE = process.env.QRX_TRACE;
  return {
    ...env,
    PATH: `${NATIVE_BIN_DIR}:${BIN_DIR}:${env.PATH ?? "/usr/bin:/bin"}`,
    QRX_VCHAN_DIR: join(dir, "vchan"),
    QRX_POLICY_DIR: join(dir, "policy"),
    QRX_DOMAINS: join(dir, "domains.toml"),
    QREXEC_LOG_DIR: join(dir, "log"),
    // No policy daemon here: the socket fails and the daemons run the policy program.
    QREXEC_POLICY_SOCKET: join(dir, "run", "no-policy-daemon.sock"),
  };
}

async function waitForFiles(paths: string[], children: Subprocess[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!paths.every((path) => existsSync(path))) {
    const dead = children.find((child) => child.exitCode !== null);
    if (dead) throw new Error(`by-hand set-up: a program exited ${dead.exitCode} before it was up`);
    if (Date.now() > deadline) {
      const missing = paths.filter((path) => !existsSync(path)).join(", ");
      throw new Error(`by-hand set-up: no ${missing} after 30 s`);
    }
    await Bun.sleep(20);
  }
}

/** What the policy program answers for the call (the set-up's policy allows it). */
export const POLICY_ANSWER =
  "user=DEFAULT\nresult=allow\ntarget=vault\nautostart=True\nrequested_target=vault\n";

export async function startByHand(): Promise<ByHandSystem> {
  const dir = mkdtempSync(join(tmpdir(), "qrx-hand-"));
  const env = files(dir);
  const run = join(dir, "run");
  const quiet = { stdin: "ignore", stdout: "ignore", stderr: "ignore" } as const;
  const spawn = (argv: string[], extra: Record<string, string> = {}) =>
    Bun.spawn(argv, { env: { ...env, ...extra }, ...quiet });
  const policyExec = join(BIN_DIR, "qrexec-policy-exec");
  const agent = (name: string, domain: number, extra: Record<string, string> = {}) =>
    spawn([join(BIN_DIR, "qrexec-agent"), `--agent-socket=${run}/agent-${name}`], {
      VCHAN_DOMAIN: String(domain),
      ...extra,
    });
  // -D keeps each daemon in the foreground, so it can be stopped by its pid.
  const daemon = (name: string, domain: number) => {
    const options = ["-D", `--socket-dir=${run}`, "-p", policyExec];
    return spawn([join(BIN_DIR, "qrexec-daemon"), ...options, String(domain), name]);
  };
  const children = [
    agent("work", WORK),
    agent("vault", VAULT, { QREXEC_SERVICE_PATH: join(dir, "vault-rpc") }),
    daemon("work", WORK),
    daemon("vault", VAULT),
  ];
  const stop = async () => {
    for (const child of children) child.kill();
    await Promise.all(children.map((child) => child.exited));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ready = [`${run}/qrexec.${WORK}`, `${run}/qrexec.${VAULT}`, `${run}/agent-work`];
    await waitForFiles(ready, children);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    callEnv: { ...env, VCHAN_DOMAIN: String(WORK) },
    clientArgv: ["qrexec-client-vm", `--agent-socket=${run}/agent-work`],
    policyArgv: [policyExec, "--", "work", "vault", "test.Echo"],
    stop,
  };
}
