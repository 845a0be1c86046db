// qrexec-policy-daemon [--socket PATH] [--policy-dir DIR]... [--legacy-dir DIR] [--domains FILE]
//                      [--ask-program CMD] [--no-tty] [--eval-simple-socket PATH]
//                      [--eval-gui-socket PATH]
// Answers upstream's policy socket (§7.4, §11.3) and reloads when policy files change.
import { Command } from "commander";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DEFAULT_POLICY_SOCKET } from "../protocol/constants.ts";
import { addLogOptions, logger } from "./common.ts";
import { cheapOutput } from "./output.ts";
import {
  addPolicySourceOptions,
  askProgramFrom,
  DOMAINS_FILE_HELP,
  policySourceFrom,
  type PolicyOptionValues,
} from "./policy-options.ts";

const PROGRAM = "qrexec-policy-daemon";

const program = addPolicySourceOptions(
  cheapOutput(new Command(PROGRAM))
    .description(
      "answer qrexec-daemon's policy queries on a unix socket (upstream's policy.sock protocol)",
    )
    .option("--socket <path>", "socket to listen on", DEFAULT_POLICY_SOCKET),
)
  .option(
    "--ask-program <cmd>",
    "answers ask rules (sh -c CMD; question as JSON on stdin and " +
      "QRX_ASK_* variables; prints the target, or nothing to deny)",
  )
  .option(
    "--ask-queue <dir>",
    "leave ask questions in DIR for any terminal to answer (qrx lab asks/answer)",
  )
  .option("--no-tty", "never prompt on the terminal for ask rules")
  .option(
    "--eval-simple-socket <path>",
    "also serve dom0's socket service policy.EvalSimple " +
      "here (e.g. /etc/qubes-rpc/policy.EvalSimple)",
  )
  .option(
    "--eval-gui-socket <path>",
    "also serve dom0's socket service policy.EvalGUI here (e.g. /etc/qubes-rpc/policy.EvalGUI)",
  )
  .option(
    "--debounce <ms>",
    "quiet time after a policy change before reloading",
    (text) => Number(text),
    100,
  )
  .addHelpText(
    "after",
    `
Every decision is logged on stderr with the rule (file:line) that made it. Policy files (and the
domains file) are watched; a change reloads them, and a policy with errors denies every call
until fixed (the errors are logged as file:line). An ask rule is answered by --ask-program, else
through --ask-queue, else a prompt on /dev/tty if there is one, else it is denied.
${DOMAINS_FILE_HELP}

Examples:
  qrexec-policy-daemon --socket /run/qubes/policy.sock --domains /etc/qubes/domains.toml
  qrexec-policy-daemon --socket /tmp/policy.sock --policy-dir ./policy.d --domains domains.toml \\
      --ask-program 'jq -r .default_target'
  qrexec-daemon --policy-socket=/tmp/policy.sock --direct 2 work
`,
  );

addLogOptions(program);
program.parse(process.argv);
const options = program.opts<
  PolicyOptionValues & {
    socket: string;
    askProgram?: string;
    askQueue?: string;
    tty: boolean;
    debounce: number;
    evalSimpleSocket?: string;
    evalGuiSocket?: string;
  }
>();
const log = logger(PROGRAM);

void serve();

/** The policy engine loads here, after parsing: --help and usage errors need only commander. */
async function serve(): Promise<void> {
  const { chooseAsker } = await import("../policy/ask.ts");
  const { PolicyDaemon } = await import("../policy/daemon.ts");
  const { PolicyStore } = await import("../policy/store.ts");
  const source = policySourceFrom(options);
  if (source.systemInfoFile)
    log(`domain facts from ${source.systemInfoFile}, checked at every request`);
  else if (source.systemInfoSocket)
    log(`domain facts from ${source.systemInfoSocket} (internal.GetSystemInfo)`);
  else if (source.domainsFile === null) {
    log.warn("no --domains file: only dom0 is known, so calls from VMs are denied");
  }
  const store = new PolicyStore(source, { log, debounceMs: options.debounce });
  const asker = chooseAsker({
    askProgram: askProgramFrom(options.askProgram),
    askQueue: options.askQueue,
    terminal: options.tty,
  });
  log(`ask rules are answered by ${asker.description}`);
  mkdirSync(dirname(options.socket), { recursive: true });
  for (const path of [options.evalSimpleSocket, options.evalGuiSocket])
    if (path !== undefined) mkdirSync(dirname(path), { recursive: true });
  const daemon = new PolicyDaemon({
    socketPath: options.socket,
    store,
    asker,
    log,
    evalSimpleSocket: options.evalSimpleSocket,
    evalGuiSocket: options.evalGuiSocket,
  });
  try {
    daemon.start();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    log.warn(`cannot listen on ${options.socket}: ${reason}`);
    process.exit(1);
  }
  store.watch();
  log(`listening on ${options.socket}`);
  if (options.evalSimpleSocket !== undefined)
    log(`serving policy.EvalSimple on ${options.evalSimpleSocket}`);
  if (options.evalGuiSocket !== undefined)
    log(`serving policy.EvalGUI on ${options.evalGuiSocket}`);

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      store.close();
      daemon.stop();
      process.exit(0);
    });
  }
  process.on("SIGHUP", () => store.reload());
}
