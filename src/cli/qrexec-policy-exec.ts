// `qrexec-policy-exec`: the daemon's own command line, `-- SOURCE TARGET SERVICE+ARG` (or the
// legacy `-- DOMID SOURCE TARGET SERVICE+ARG IDENT`), is answered without loading commander
// (a third of the start, on every call of a daemon without a policy daemon). Bun drops that
// `--`, so it is three (or five) words none of which starts with `-`: commander takes them all as
// arguments and every option keeps its default, so the answer is the same. Any other command
// line is commander's (qrexec-policy-exec-commands.ts).
import { DEFAULT_LEGACY_POLICY_DIR } from "../policy/defaults.ts";
import { runPolicyExec } from "./policy-exec-run.ts";

const args = process.argv.slice(2);
if ((args.length === 3 || args.length === 5) && !args.some((word) => word.startsWith("-"))) {
  void runPolicyExec(args, { legacyDir: DEFAULT_LEGACY_POLICY_DIR, tty: true });
} else {
  require("./qrexec-policy-exec-commands.ts");
}
