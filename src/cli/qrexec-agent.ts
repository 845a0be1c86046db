// qrexec-agent [--no-fork-server] [--agent-socket=PATH] [--fork-server-socket=PATH]
//              [--peer-profile=default|mirage]
// (§5.1; the mirage profile: §14, src/protocol/peer-profile.ts).
import { Command, Option } from "commander";
import {
  PEER_PROFILES,
  parsePeerProfileName,
  peerProfile,
  type PeerProfile,
} from "../protocol/peer-profile.ts";
import { DEFAULT_AGENT_SOCKET, DEFAULT_FORK_SERVER_SOCKET } from "../protocol/constants.ts";
import { ownDomain } from "../own-domain.ts";
import { addLogOptions, die, logger, requireStdio } from "./common.ts";
import { cheapOutput } from "./output.ts";

const PROGRAM = "qrexec-agent";

const program = cheapOutput(new Command(PROGRAM))
  .description("the qrexec agent of this domain: serves dom0's control vchan and qrexec-client-vm")
  .option(
    "--agent-socket <path>",
    "trigger socket for qrexec-client-vm " +
      `(default: $QRX_AGENT_SOCKET, else ${DEFAULT_AGENT_SOCKET})`,
  )
  .option(
    "--fork-server-socket <path>",
    "fork server socket (%s: user); accepted for compatibility",
    DEFAULT_FORK_SERVER_SOCKET,
  )
  .option(
    "--no-fork-server",
    "never use a fork server (this agent never does: it serves calls itself)",
  )
  .option(
    "--status-file <path>",
    "keep the running calls in this JSON file (qrx extension, read by qrx lab top)",
  )
  .addOption(
    new Option(
      "--peer-profile <name>",
      "behave on the wire as this kind of peer: default (the " +
        "Linux agent) or mirage (a mirage-qubes 2.0 unikernel)",
    )
      .choices([...PEER_PROFILES])
      .default("default"),
  )
  .addHelpText(
    "after",
    `
Environment:
  VCHAN_DOMAIN           this domain's id (the vchan toward dom0 is on port 512)
  QRX_VCHAN              vchan transport: shm (default) or socket (VCHAN_SOCKET_DIR)
  QREXEC_SERVICE_PATH    where services are looked up ` +
      `(default /run/qubes-rpc:/usr/local/etc/qubes-rpc:/etc/qubes-rpc)
  QUBES_RPC_CONFIG_PATH  per-service configuration files
  QRX_MAX_PAGES          page cap per vchan (the mirage profile's default: 128)
  QRX_MIRAGE_BUGS        with --peer-profile=mirage, mirage-qubes 2.0 wire bugs to reproduce
                         (comma-separated): chunk-length (chunk headers carry the total remaining
                         length), trigger3-ident (TRIGGER3 carries the request id as service name)

Examples:
  VCHAN_DOMAIN=2 QREXEC_SERVICE_PATH=$HOME/rpc qrexec-agent --agent-socket=/tmp/work/qrexec-agent
  VCHAN_DOMAIN=4 qrexec-agent --peer-profile=mirage --agent-socket=/tmp/mirage/qrexec-agent
`,
  );

addLogOptions(program);
program.parse(process.argv);
const given = program.opts<{ agentSocket?: string; peerProfile: string; statusFile?: string }>();
// Read after parsing: --help does not depend on the environment (bin/launch.sh replays it).
const options = {
  ...given,
  agentSocket: given.agentSocket ?? process.env.QRX_AGENT_SOCKET ?? DEFAULT_AGENT_SOCKET,
};
requireStdio(PROGRAM, 125);
const log = logger(PROGRAM);

void serve();

/** The agent's modules load here, after parsing: --help and usage errors need only commander. */
async function serve(): Promise<void> {
  const { Agent } = await import("../agent/agent.ts");
  const { CallStatusFile } = await import("../agent/call-status.ts");
  const { configure, watchSigusr1 } = await import("../native.ts");
  const { defaultConfigPath } = await import("../services/config.ts");
  const { defaultServicePath } = await import("../services/lookup.ts");
  const { vchanBackend } = await import("../paths.ts");
  let profile: PeerProfile;
  try {
    profile = peerProfile(parsePeerProfileName(options.peerProfile));
    // A MirageOS domain's grant table (vchan.md §3); QRX_MAX_PAGES, when given, wins.
    if (profile.pagesMax !== null && !process.env.QRX_MAX_PAGES)
      configure({ pagesMax: profile.pagesMax });
  } catch (error) {
    die(PROGRAM, error instanceof Error ? error.message : String(error), 1);
  }

  let agent: InstanceType<typeof Agent>;
  try {
    agent = new Agent({
      profile,
      domain: ownDomain(),
      agentSocket: options.agentSocket,
      servicePath: defaultServicePath(),
      configPath: defaultConfigPath(),
      env: process.env,
      log,
      statusFile: new CallStatusFile(
        options.statusFile ?? null,
        process.env.QRX_DOMAIN_NAME || String(ownDomain()),
      ),
    });
    agent.start();
  } catch (error) {
    die(PROGRAM, error instanceof Error ? error.message : String(error), 1);
  }
  const bugs = profile.bugs.size > 0 ? `, reproducing bugs: ${[...profile.bugs].join(", ")}` : "";
  const peer = profile.name === "default" ? "" : ` as a ${profile.name} peer${bugs}`;
  log(`serving domain ${ownDomain()} on ${options.agentSocket}${peer}`);
  log.debug(`services from ${defaultServicePath()}, vchan transport ${vchanBackend()}`);

  // Services ask for single-socket mode with SIGUSR1 to QREXEC_AGENT_PID, which is us (§6.6).
  watchSigusr1("by-child");

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      agent.stop();
      process.exit(0);
    });
  }
}
