// `qrx`: the user's front door. A plain `qrx run DOMAIN [--] COMMAND...` is run without loading
// commander and the other commands (about two thirds of the start, docs/architecture.md,
// "Start-up"), since scripts pay that start for every command they run in a domain; so is
// `qrx --version`, which must answer even when the rest is broken. Any other command line,
// `qrx run`'s help and errors included, is commander's (qrx-commands.ts).
import { runInLab } from "./lab-commands.ts";
import { plainRun } from "./plain-run.ts";

const args = process.argv.slice(2);
const run = plainRun(args);
if (run !== null) void runInLab(run.domain, run.command, { dir: run.dir });
else if (args[0] === "-V" || args[0] === "--version") void printVersion();
else require("./qrx-commands.ts");

async function printVersion(): Promise<void> {
  const { versionText } = await import("./version.ts");
  console.log(await versionText());
}
