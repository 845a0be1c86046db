// `qvm-run`: a plain command line (src/cli/qvm-run-plain.ts: value-less flags, then VMNAME and
// COMMAND, what scripts type) runs without loading commander, about a fifth of its start; any
// other is commander's (qvm-run-command.ts).
import { isTerminal } from "./output.ts";
import { plainQvmRun, runQvmRun } from "./qvm-run-plain.ts";

const plain = plainQvmRun(process.argv.slice(2), isTerminal(1));
if (plain !== null) void runQvmRun(plain);
else require("./qvm-run-command.ts").runWithCommander(process.argv);
