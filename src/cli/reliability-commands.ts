// `qrx bench soak|faults|exhaustion`: the reliability benches (docs/reliability.md). Commander
// wiring only; each bench lives in bench/.
import { type Command, InvalidArgumentError } from "commander";
import { printRows } from "../bench/table.ts";

function positiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`"${text}" is not a positive whole number`);
  }
  return value;
}

function list(text: string): string[] {
  return text
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
}

/** Fails the command (exit 1) when a name is not one of `known`. */
function checkNames(command: Command, what: string, names: string[], known: readonly string[]) {
  const unknown = names.find((name) => !known.includes(name));
  if (unknown === undefined) return;
  command.error(`unknown ${what} ${unknown} (one of ${known.join(", ")})`);
}

function addSoak(bench: Command): void {
  bench
    .command("soak")
    .description(
      "calls without a pause in a lab, one at a time then 20 at once: failures, calls/s, " +
        "fds and RSS of every lab process",
    )
    .option("--seconds <n>", "duration (half sequential, half concurrent)", positiveInteger, 60)
    .option("--json", "print JSON rows {name, calls, failures, callsPerSecond, fdGrowth, ...}")
    .addHelpText("after", "\nExamples:\n  qrx bench soak --seconds 600\n  qrx bench soak --json\n")
    .action(async (options: { seconds: number; json?: boolean }) => {
      const { runSoak, printSoak } = await import("../bench/soak.ts");
      const rows = await runSoak({ seconds: options.seconds, progress: !options.json });
      printRows(rows, options.json, printSoak);
      if (rows.some((row) => row.failures > 0)) process.exitCode = 1;
    });
}

function addFaults(bench: Command, parseSize: (text: string) => number): void {
  const command = bench
    .command("faults")
    .description(
      "the fault matrix: SIGKILL of each process during a 256 MiB call; who ends, how, " +
        "what leaked",
    )
    .option("--json", "print JSON rows {victim, caller, callerEndedMs, serviceEndedMs, ...}")
    .option("--bytes <size>", "size of the call", parseSize, parseSize("256M"))
    .option("--victims <list>", "processes to kill, comma separated (default: all)", list)
    .addHelpText("after", "\nExamples:\n  qrx bench faults\n  qrx bench faults --victims caller\n");
  command.action(async (options: { json?: boolean; bytes: number; victims?: string[] }) => {
    const { runFaults, printFaults, VICTIMS } = await import("../bench/faults.ts");
    const victims = options.victims ?? [...VICTIMS];
    checkNames(command, "victim", victims, VICTIMS);
    const rows = await runFaults({
      bytes: options.bytes,
      victims: victims as (typeof VICTIMS)[number][],
      progress: !options.json,
    });
    printRows(rows, options.json, (faults) => printFaults(faults, options.bytes));
  });
}

function addExhaustion(bench: Command): void {
  const command = bench
    .command("exhaustion")
    .description(
      "1,000 calls at once, an fd limit of 256, a service or a client that never reads: " +
        "outcomes, and the lab's memory and fds",
    )
    .option("--json", "print JSON rows {name, calls, ok, outcomes, rssBeforeKb, rssPeakKb, ...}")
    .option("--scenarios <list>", "comma separated (default: all)", list)
    .addHelpText(
      "after",
      "\nExamples:\n  qrx bench exhaustion\n  qrx bench exhaustion --scenarios nofile-256\n",
    );
  command.action(async (options: { json?: boolean; scenarios?: string[] }) => {
    const bench = await import("../bench/exhaustion.ts");
    const names = options.scenarios ?? bench.SCENARIO_NAMES;
    checkNames(command, "scenario", names, bench.SCENARIO_NAMES);
    const rows = await bench.runExhaustion({ names, progress: !options.json });
    printRows(rows, options.json, bench.printExhaustion);
  });
}

export function addReliabilityBenches(bench: Command, parseSize: (text: string) => number): void {
  addSoak(bench);
  addFaults(bench, parseSize);
  addExhaustion(bench);
}
