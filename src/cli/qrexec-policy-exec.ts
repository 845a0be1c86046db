// qrexec-policy-exec [--policy-dir DIR]... [--legacy-dir DIR] [--domains FILE] [--ask-program CMD]
//                    [--no-tty] [--assume-yes-for-ask] [--just-evaluate] -- SOURCE TARGET SERVICE+ARG
// One policy decision, as qrexec-daemon's --policy-program (§7.4): the key=value answer on stdout,
// exit 0 for allow, 126 for deny. The decision and its rule (file:line) go to stderr.
import { Command } from "commander";
import { answerQuery } from "../policy/answer.ts";
import { chooseAsker } from "../policy/ask.ts";
import { describeLoad, factsFor, loadSnapshot } from "../policy/store.ts";
import { logger } from "./common.ts";
import { addPolicySourceOptions, askProgramFrom, DOMAINS_FILE_HELP, policySourceFrom, type PolicyOptionValues } from "./policy-options.ts";

const PROGRAM = "qrexec-policy-exec";
const EXIT_DENY = 126;

const program = addPolicySourceOptions(
  new Command(PROGRAM)
    .description("evaluate the policy for one call and print the answer qrexec-daemon expects")
    .argument("<source>", "the calling domain")
    .argument("<target>", "the intended target (empty or @default: let the policy choose)")
    .argument("<service>", "SERVICE or SERVICE+ARG"),
)
  .option("--ask-program <cmd>", "answers ask rules (sh -c CMD; question as JSON on stdin and QRX_ASK_* variables; prints the target, or nothing to deny)")
  .option("--no-tty", "never prompt on the terminal for ask rules")
  .option("--assume-yes-for-ask", "answer ask rules with the intended target, if it is a choice")
  .option("--just-evaluate", "print only result=allow or result=deny; never ask")
  .option("--path <dir>", "upstream's name for one --policy-dir")
  .addHelpText(
    "after",
    `
Exit status: 0 allow, 126 deny (also for a broken policy or domains file), 1 bad usage.
${DOMAINS_FILE_HELP}

Examples:
  qrexec-policy-exec --policy-dir ./policy.d --domains domains.toml -- work vault test.Add
  qrexec-daemon --policy-socket= --policy-program="$PWD/bin/qrexec-policy-exec" --direct 2 work
    (options for the program then come from QRX_DOMAINS and the default policy directories)
`,
  );
program.showHelpAfterError();
program.exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 1));
program.parse(process.argv);
const [source, target, service] = program.processedArgs as [string, string, string];
type ExecOptions = PolicyOptionValues & { askProgram?: string; tty: boolean; assumeYesForAsk?: boolean; justEvaluate?: boolean; path?: string };
const options = program.opts<ExecOptions>();
if (options.path !== undefined) options.policyDir = [...(options.policyDir ?? []), options.path];
const log = logger(PROGRAM);

const policySource = policySourceFrom(options);
const snapshot = loadSnapshot(policySource);
if (snapshot.errors.length > 0) for (const line of describeLoad(snapshot)) log(line);
const asker = chooseAsker({ askProgram: askProgramFrom(options.askProgram), terminal: options.tty });
const answered = await answerQuery(
  { source, requestedSource: null, intendedTarget: target, serviceAndArg: service },
  { assumeYesForAsk: options.assumeYesForAsk, justEvaluate: options.justEvaluate },
  { policy: snapshot.policy, facts: await factsOrExit(), asker, log },
);

async function factsOrExit() {
  try {
    return await factsFor(policySource, snapshot);
  } catch (error) {
    log(`domain facts unavailable, denied: ${error instanceof Error ? error.message : String(error)}`);
    process.stdout.write("result=deny\n");
    process.exit(EXIT_DENY);
  }
}
process.stdout.write(answered.text + "\n");
process.exitCode = answered.decision.kind === "allow" ? 0 : EXIT_DENY;
