// qrexec-agent [--no-fork-server] [--agent-socket=PATH] [--fork-server-socket=PATH] (§5.1).
import { Command } from "commander";
import { Agent } from "../agent/agent.ts";
import { DEFAULT_AGENT_SOCKET, DEFAULT_FORK_SERVER_SOCKET } from "../protocol/constants.ts";
import { defaultConfigPath } from "../services/config.ts";
import { defaultServicePath } from "../services/lookup.ts";
import { watchSigusr1 } from "../native.ts";
import { die, logger, ownDomain, requireStdio } from "./common.ts";

const PROGRAM = "qrexec-agent";

const program = new Command(PROGRAM)
  .description("the qrexec agent of this domain: serves dom0's control vchan and qrexec-client-vm")
  .option("--agent-socket <path>", "trigger socket for qrexec-client-vm", process.env.QRX_AGENT_SOCKET ?? DEFAULT_AGENT_SOCKET)
  .option("--fork-server-socket <path>", "fork server socket (%s: user); accepted for compatibility", DEFAULT_FORK_SERVER_SOCKET)
  .option("--no-fork-server", "never use a fork server (this agent never does: it serves calls itself)")
  .addHelpText(
    "after",
    `
Environment:
  VCHAN_DOMAIN           this domain's id (the vchan toward dom0 is on port 512)
  QRX_VCHAN              vchan transport: shm (default) or socket (VCHAN_SOCKET_DIR)
  QREXEC_SERVICE_PATH    where services are looked up (default /run/qubes-rpc:/usr/local/etc/qubes-rpc:/etc/qubes-rpc)
  QUBES_RPC_CONFIG_PATH  per-service configuration files

Example:
  VCHAN_DOMAIN=2 QREXEC_SERVICE_PATH=$HOME/rpc qrexec-agent --agent-socket=/tmp/work/qrexec-agent
`,
  );

program.parse(process.argv);
const options = program.opts<{ agentSocket: string }>();
requireStdio(PROGRAM, 125);
const log = logger(PROGRAM);

let agent: Agent;
try {
  agent = new Agent({
    domain: ownDomain(),
    agentSocket: options.agentSocket,
    servicePath: defaultServicePath(),
    configPath: defaultConfigPath(),
    env: process.env,
    log,
  });
  agent.start();
} catch (error) {
  die(PROGRAM, error instanceof Error ? error.message : String(error), 1);
}
log(`serving domain ${ownDomain()} on ${options.agentSocket}`);

// Services ask for single-socket mode with SIGUSR1 to QREXEC_AGENT_PID, which is us (§6.6).
watchSigusr1("by-child");

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    agent.stop();
    process.exit(0);
  });
}
