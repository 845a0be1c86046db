// `qrx`: the user's front door. A plain `qrx run DOMAIN [--] COMMAND...` is run without loading
// commander and the other commands (about two thirds of the start, docs/architecture.md,
// "Start-up"), since scripts pay that start for every command they run in a domain; any other
// command line, `qrx run`'s help and errors included, is commander's (qrx-commands.ts).
import { runInLab } from "./lab-commands.ts";
import { plainRun } from "./plain-run.ts";

const run = plainRun(process.argv.slice(2));
if (run !== null) void runInLab(run.domain, run.command, { dir: run.dir });
else require("./qrx-commands.ts");
