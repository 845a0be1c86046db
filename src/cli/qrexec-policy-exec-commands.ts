// qrexec-policy-exec [--policy-dir DIR | --path DIR]... [--legacy-dir DIR] [--domains FILE]
//                    [--ask-program CMD] [--no-tty] [--assume-yes-for-ask] [--just-evaluate]
//                    -- SOURCE TARGET SERVICE+ARG  |  -- DOMID SOURCE TARGET SERVICE+ARG IDENT
// One policy decision, as qrexec-daemon's --policy-program (§7.4): the key=value answer on stdout,
// exit 0 for allow, 126 for deny. The decision and its rule (file:line) go to stderr. The legacy
// 5-argument form connects an allowed call itself, through qrexec-client -c. Commander's side:
// src/cli/qrexec-policy-exec.ts starts here unless it took the daemon's own command line.
import { Command } from "commander";
import { addLogOptions } from "./common.ts";
import { cheapOutput } from "./output.ts";
import { addPolicySourceOptions, DOMAINS_FILE_HELP } from "./policy-options.ts";
import { type ExecOptions, PROGRAM, runPolicyExec } from "./policy-exec-run.ts";

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

const options = program.opts<ExecOptions & { path?: string }>();
if (options.path !== undefined) options.policyDir = [...(options.policyDir ?? []), options.path];
if (program.args.length !== 3 && program.args.length !== 5) {
  program.error(`${PROGRAM}: expected 3 arguments (or the legacy 5), got ${program.args.length}`);
}
void runPolicyExec(program.args, options);
