// `qrx`: the user's front door. A plain `qrx run DOMAIN [--] COMMAND...` is run without loading
// commander and the other commands (about two thirds of the start, docs/architecture.md,
// "Start-up"), since scripts pay that start for every command they run in a domain; any other
// command line, `qrx run`'s help and errors included, is commander's (qrx-commands.ts).
import { runInLab } from "./lab-commands.ts";

/** `run [--dir DIR | --dir=DIR] DOMAIN [--] COMMAND...` exactly, as commander would read it. */
export function plainRun(args: readonly string[]): { domain: string; command: string[]; dir?: string } | null {
  if (args[0] !== "run") return null;
  let index = 1;
  let dir: string | undefined;
  if (args[index] === "--dir" && args[index + 1] !== undefined && !args[index + 1]!.startsWith("-")) {
    dir = args[index + 1];
    index += 2;
  } else if (args[index]?.startsWith("--dir=")) {
    dir = args[index]!.slice("--dir=".length);
    index += 1;
  }
  const domain = args[index];
  const command = args.slice(index + 1);
  if (dir === "" || domain === undefined || domain === "" || domain.startsWith("-")) return null;
  if (command.length === 0 || (command[0] === "--" && command.length === 1)) return null;
  return { domain, command, dir };
}

const run = plainRun(process.argv.slice(2));
if (run !== null) void runInLab(run.domain, run.command, run.dir);
else require("./qrx-commands.ts");
