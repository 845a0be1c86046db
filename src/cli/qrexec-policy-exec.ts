// qrexec-policy-exec [--policy-dir DIR | --path DIR]... [--legacy-dir DIR] [--domains FILE]
//                    [--ask-program CMD] [--no-tty] [--assume-yes-for-ask] [--just-evaluate]
//                    -- SOURCE TARGET SERVICE+ARG  |  -- DOMID SOURCE TARGET SERVICE+ARG IDENT
// One policy decision, as qrexec-daemon's --policy-program (§7.4): the key=value answer on stdout,
// exit 0 for allow, 126 for deny. The decision and its rule (file:line) go to stderr. The legacy
// 5-argument form connects an allowed call itself, through qrexec-client -c.
import { Command } from "commander";
import type { Answered } from "../policy/answer.ts";
import type { LegacyCall } from "../policy/legacy-exec.ts";
import type { PolicySnapshot } from "../policy/store.ts";
import { addLogOptions, logger } from "./common.ts";
import { cheapOutput } from "./output.ts";
import {
  addPolicySourceOptions,
  askProgramFrom,
  DOMAINS_FILE_HELP,
  policySourceFrom,
  type PolicyOptionValues,
} from "./policy-options.ts";

const PROGRAM = "qrexec-policy-exec";
const EXIT_DENY = 126;
const EXIT_USAGE = 1;
const LEGACY_ARGS = "DOMID SOURCE TARGET SERVICE+ARG IDENT";
const ASK_PROGRAM_HELP =
  "answers ask rules (sh -c CMD; question as JSON on stdin and QRX_ASK_* variables; " +
  "prints the target, or nothing to deny)";

const program = addPolicySourceOptions(
  cheapOutput(new Command(PROGRAM))
    .description("evaluate the policy for one call and print the answer qrexec-daemon expects")
    .usage(`[options] -- SOURCE TARGET SERVICE+ARG\n       ${PROGRAM} [options] -- ${LEGACY_ARGS}`)
    .argument("<arguments...>", `SOURCE TARGET SERVICE+ARG, or the legacy ${LEGACY_ARGS}`),
)
  .option("--ask-program <cmd>", ASK_PROGRAM_HELP)
  .option("--no-tty", "never prompt on the terminal for ask rules")
  .option("--assume-yes-for-ask", "answer ask rules with the intended target, if it is a choice")
  .option("--just-evaluate", "print only result=allow or result=deny; never ask")
  .option("--path <dir>", "upstream's name for one --policy-dir")
  .addHelpText(
    "after",
    `
SOURCE is the calling domain, TARGET the intended target (empty or @default: let the policy
choose). The legacy form (daemons before R4.2) prints nothing: an allowed call is connected by
running qrexec-client -d TARGET -c IDENT,SOURCE,DOMID (not to a DisposableVM: exit 125).

Exit status: 0 allow, 126 deny (also for a broken policy or domains file), 1 bad usage; the
legacy form exits with qrexec-client's status for an allowed call.
${DOMAINS_FILE_HELP}

Examples:
  qrexec-policy-exec --policy-dir ./policy.d --domains domains.toml -- work vault test.Add
  qrexec-policy-exec --path ./policy.d -- 2 work vault test.Add SOCKET7
  qrexec-daemon --policy-socket= --policy-program="$PWD/bin/qrexec-policy-exec" --direct 2 work
    (options for the program then come from QRX_DOMAINS and the default policy directories)
`,
  );
addLogOptions(program);
program.showHelpAfterError();
program.exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE));
program.parse(process.argv);

type ExecOptions = PolicyOptionValues & {
  askProgram?: string;
  tty: boolean;
  assumeYesForAsk?: boolean;
  justEvaluate?: boolean;
  path?: string;
};
const options = program.opts<ExecOptions>();
if (options.path !== undefined) options.policyDir = [...(options.policyDir ?? []), options.path];
const positional = program.args;
if (positional.length !== 3 && positional.length !== 5) {
  program.error(`${PROGRAM}: expected 3 arguments (or the legacy 5), got ${positional.length}`);
}
const [domainId = "", , , , ident = ""] = positional;
const legacy: LegacyCall | null = positional.length === 5 ? { domainId, ident } : null;
const request = legacy === null ? positional : positional.slice(1, 4);
const [source, target, service] = request as [string, string, string];
const log = logger(PROGRAM);

const form = legacy === null ? "" : " (legacy form)";
log.debug(`request: ${source} -> ${target || "@default"} ${service}${form}`);
const policySource = policySourceFrom(options);

/** The facts to decide with; none (a broken domains file, no qubesd) is a deny. */
async function factsOrExit(snapshot: PolicySnapshot) {
  const { factsFor } = await import("../policy/store.ts");
  try {
    return await factsFor(policySource, snapshot);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    log.warn(`domain facts unavailable, denied: ${reason}`);
    if (legacy === null) process.stdout.write("result=deny\n");
    process.exit(EXIT_DENY);
  }
}

/** The legacy form: nothing on stdout; an allowed call is connected here. */
async function connectLegacy(call: LegacyCall, result: Answered): Promise<number> {
  if (result.decision.kind !== "allow") return EXIT_DENY;
  if (options.justEvaluate) return 0;
  const { connectLegacyCall, legacyClientArgs } = await import("../policy/legacy-exec.ts");
  const client = legacyClientArgs(result.decision, call);
  if ("error" in client) {
    log.warn(`cannot connect the call: ${client.error}`);
    return 125;
  }
  const status = await connectLegacyCall(client.args);
  if (status !== 0) log.warn(`qrexec-client ${client.args.join(" ")} exited with ${status}`);
  return status;
}

// The policy engine loads here, after parsing (--help and usage errors need only commander), and
// no top-level await: the start-up bundle is CommonJS (docs/architecture.md, "Start-up").
async function main(): Promise<void> {
  const { describeLoad, loadSnapshot } = await import("../policy/store.ts");
  const { chooseAsker } = await import("../policy/ask.ts");
  const { answerQuery } = await import("../policy/answer.ts");
  const snapshot = loadSnapshot(policySource);
  if (snapshot.errors.length > 0) for (const line of describeLoad(snapshot)) log(line);
  const asker = chooseAsker({
    askProgram: askProgramFrom(options.askProgram),
    terminal: options.tty,
  });
  const answered = await answerQuery(
    { source, requestedSource: null, intendedTarget: target, serviceAndArg: service },
    { assumeYesForAsk: options.assumeYesForAsk, justEvaluate: options.justEvaluate },
    { policy: snapshot.policy, facts: await factsOrExit(snapshot), asker, log },
  );
  if (legacy !== null) {
    process.exitCode = await connectLegacy(legacy, answered);
  } else {
    process.stdout.write(answered.text + "\n");
    process.exitCode = answered.decision.kind === "allow" ? 0 : EXIT_DENY;
  }
}

void main();
