// `qrexec-policy-exec`: the daemon's own command line, `-- SOURCE TARGET SERVICE+ARG` (or the
// legacy `-- DOMID SOURCE TARGET SERVICE+ARG IDENT`), is answered without loading commander
// (a third of the start, on every call of a daemon without a policy daemon). Any other command
// line is commander's (qrexec-policy-exec-commands.ts).
import { DEFAULT_LEGACY_POLICY_DIR } from "../policy/defaults.ts";
import { runPolicyExec } from "./policy-exec-run.ts";

/**
 * Whether ARGS came after a `--`. Bun drops a `--` that comes first from process.argv, and a
 * SERVICE+ARG may start with `-` (a valid service name), which commander would then take for
 * an option: upstream's program reads it as the service. /proc/self/cmdline still has the `--`.
 */
function afterDashDash(args: string[]): boolean {
  const { readFileSync } = require("node:fs") as typeof import("node:fs");
  let cmdline: string[];
  try {
    cmdline = readFileSync("/proc/self/cmdline", "utf8").split("\0").slice(0, -1);
  } catch {
    return false;
  }
  if (cmdline.length <= args.length) return false;
  const tail = cmdline.slice(cmdline.length - args.length - 1);
  return tail[0] === "--" && args.every((word, index) => tail[index + 1] === word);
}

// Three (or five) words: commander takes them all as arguments, with every option at its
// default, when none starts with `-`, or when they came after a `--` (which Bun drops).
const args = process.argv.slice(2);
const daemonForm =
  (args.length === 3 || args.length === 5) &&
  (!args.some((word) => word.startsWith("-")) || afterDashDash(args));
if (daemonForm) {
  void runPolicyExec(args, { legacyDir: DEFAULT_LEGACY_POLICY_DIR, tty: true });
} else {
  require("./qrexec-policy-exec-commands.ts");
}
