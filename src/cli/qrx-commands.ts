// `qrx`'s commands (src/cli/qrx.ts starts here unless it took a plain `qrx run`). Commander wiring
// only; each command lives in its own module.
import { Command, InvalidArgumentError } from "commander";
import { addConformanceCommand } from "./conformance-command.ts";
import { addLabCommands, guarded, traceInto } from "./lab-commands.ts";
import { addLogOptions, runUntilBrokenPipe } from "./common.ts";
import { cheapOutput } from "./output.ts";
import { addPolicyCommands } from "./policy-commands.ts";
import { addReliabilityBenches } from "./reliability-commands.ts";
import { addToolCommands } from "./tool-commands.ts";
import { addTraceCommand } from "./trace-command.ts";
import { printRows } from "../bench/table.ts";

export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?)(i?b?)?$/i.exec(text.trim());
  if (!match)
    throw new InvalidArgumentError(`"${text}" is not a size (examples: 1024, 64K, 1M, 1G)`);
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[
    match[2]!.toLowerCase() as "" | "k" | "m" | "g"
  ];
  return Math.round(Number(match[1]) * unit);
}

function parseSizeList(text: string): number[] {
  return text.split(",").map(parseSize);
}

/**
 * A whole number of `what` from `min` (to `max`), refused as "not a number of WHAT (MIN to
 * MAX)", or without a `max`, "not a positive number of WHAT" (from 1) or "not a number of WHAT".
 */
function countOf(what: string, min: number, max?: number): (text: string) => number {
  const range = max !== undefined ? ` (${min} to ${max})` : "";
  const kind = max === undefined && min === 1 ? "a positive number" : "a number";
  return (text: string) => {
    const count = Number(text);
    if (!Number.isSafeInteger(count) || count < min || (max !== undefined && count > max))
      throw new InvalidArgumentError(`"${text}" is not ${kind} of ${what}${range}`);
    return count;
  };
}

const parseRounds = countOf("rounds", 1, 99);
const parseSamples = countOf("samples", 1, 100);

interface CopyCommandOptions {
  json?: boolean;
  bytes: number;
  files: number;
  fileSize: number;
  rounds: number;
}

interface SweepCommandOptions {
  sizes: number[];
  direction: string;
  concurrency: number[];
  bytes: number;
  samples: number;
  json?: string;
  plot?: string;
}

const program = cheapOutput(new Command("qrx"))
  .description("qrexec for one Linux host: domains as processes, vchans in shared memory")
  .showHelpAfterError()
  .enablePositionalOptions()
  // Answered by src/cli/qrx.ts before this module loads; declared here for --help.
  .option("-V, --version", "print qrx's version and its native library's ABI version");
// Before the subcommands, for every program qrx starts (QRX_LOG): `qrx -v run work -- ...`.
addLogOptions(program);

const bench = program
  .command("bench")
  .description("measure qrx against a baseline in the same run");

bench
  .command("vchan")
  .description("throughput of the shm vchan between two processes, beside a pipe and a socketpair")
  .option("--json", "print JSON rows instead of a table")
  .option(
    "--sizes <list>",
    "ring sizes to measure",
    parseSizeList,
    parseSizeList("1K,2K,4K,64K,256K,1M"),
  )
  .option("--bytes <size>", "bytes moved per measurement", parseSize, parseSize("1G"))
  .addHelpText(
    "after",
    "\nExamples:\n  qrx bench vchan\n  qrx bench vchan --json --sizes 1K,1M --bytes 256M\n",
  )
  .action(async (options: { json?: boolean; sizes: number[]; bytes: number }) => {
    const { runVchanBench, printVchanBench } = await import("../bench/vchan.ts");
    const rows = await runVchanBench({
      sizes: options.sizes,
      bytes: options.bytes,
      progress: !options.json,
    });
    printRows(rows, options.json, printVchanBench);
  });

bench
  .command("call")
  .description(
    "whole qrexec calls in a lab of processes: 1 GiB " +
      "each way beside a 3-hop pipe, and call latency",
  )
  .option("--json", "print JSON rows instead of a table")
  .option("--bytes <size>", "bytes moved per throughput row", parseSize, parseSize("1G"))
  .option("--calls <n>", "calls per latency row", countOf("calls", 1), 200)
  .option(
    "--rounds <n>",
    "runs of each throughput row (in turns, rotated each round); rows are medians",
    parseRounds,
    3,
  )
  .addHelpText(
    "after",
    "\nExamples:\n  qrx bench call\n  qrx bench call --json --bytes 256M --calls 50\n",
  )
  .action(async (options: { json?: boolean; bytes: number; calls: number; rounds: number }) => {
    const { runCallBench, printCallBench } = await import("../bench/call.ts");
    const rows = await runCallBench({
      bytes: options.bytes,
      calls: options.calls,
      rounds: options.rounds,
      progress: !options.json,
    });
    printRows(rows, options.json, printCallBench);
  });

bench
  .command("sweep")
  .description(
    "call throughput and CPU per GiB for every vchan ring size, " +
      "direction and concurrency, in a lab, beside a 3-hop pipe",
  )
  .option(
    "--sizes <list>",
    "ring sizes (qrexec-client-vm --buffer-size)",
    parseSizeList,
    parseSizeList("1K,2K,4K,16K,64K,256K,1M"),
  )
  .option(
    "--direction <which>",
    "to-service, from-service or both",
    (text: string) => {
      if (text !== "to-service" && text !== "from-service" && text !== "both")
        throw new InvalidArgumentError(`"${text}" is not to-service, from-service or both`);
      return text;
    },
    "both",
  )
  .option(
    "--concurrency <list>",
    "calls at once, comma separated",
    (text: string) => {
      const values = text.split(",").map(Number);
      if (values.some((value) => !Number.isSafeInteger(value) || value < 1 || value > 64))
        throw new InvalidArgumentError(`"${text}" is not a list of counts from 1 to 64`);
      return values;
    },
    [1, 4, 16],
  )
  .option(
    "--bytes <size>",
    "bytes per measurement (split between concurrent calls)",
    parseSize,
    parseSize("256M"),
  )
  .option("--samples <n>", "measurements per point (rows: medians, every sample)", parseSamples, 3)
  .option(
    "--json <file>",
    "also write the rows {name, ringBytes, concurrency, bytes, seconds, mbps, " +
      "cpuSecondsPerGiB, samples} to FILE",
  )
  .option(
    "--plot <file>",
    "also write an SVG chart: throughput and CPU per GiB by ring size, the pipe, the spread",
  )
  .addHelpText(
    "after",
    "\nExamples:\n  qrx bench sweep --plot sweep.svg\n" +
      "  qrx bench sweep --sizes 1K,4K,64K --direction " +
      "to-service --concurrency 1 --bytes 64M --json rows.json\n",
  )
  .action(async (options: SweepCommandOptions) => {
    const { unwritable } = await import("./output-files.ts");
    for (const output of [options.json, options.plot]) {
      const why = output === undefined ? null : unwritable(output);
      if (why === null) continue;
      process.stderr.write(`qrx: cannot write ${output}: ${why}\n`);
      process.exitCode = 1;
      return;
    }
    const { runSweep, printSweep, writeSweepOutputs } = await import("../bench/sweep.ts");
    const directions =
      options.direction === "both"
        ? (["to-service", "from-service"] as const)
        : ([options.direction] as ["to-service"] | ["from-service"]);
    const { sizes, concurrency, bytes, samples } = options;
    const sweep = { sizes, directions: [...directions], concurrency, bytes, samples };
    const rows = await runSweep({ ...sweep, progress: true });
    printSweep(rows);
    writeSweepOutputs(rows, options.json, options.plot);
    if (options.json) console.log(`\nrows written to ${options.json}`);
    if (options.plot) console.log(`chart written to ${options.plot}`);
  });

bench
  .command("dispvm")
  .description(
    "DisposableVM create, start, kill and a whole $dispvm " +
      "call in the default lab, beside a call to a running VM",
  )
  .option("--json", "print JSON rows {name, medianMs, p90Ms, samples} instead of a table")
  .option(
    "--samples <n>",
    "repetitions of each measurement",
    (text: string) => {
      const samples = Number(text);
      if (!Number.isSafeInteger(samples) || samples < 1)
        throw new InvalidArgumentError(`"${text}" is not a positive number`);
      return samples;
    },
    20,
  )
  .addHelpText(
    "after",
    "\nTarget: create <= 200 ms.\n\nExamples:\n  qrx bench dispvm\n" +
      "  qrx bench dispvm --json --samples 50\n",
  )
  .action(async (options: { json?: boolean; samples: number }) => {
    const { runDispvmBench, printDispvmBench } = await import("../bench/dispvm.ts");
    const rows = await runDispvmBench({ samples: options.samples, progress: !options.json });
    printRows(rows, options.json, printDispvmBench);
  });

bench
  .command("copy")
  .description(
    "qvm-copy from work to vault in a lab: one big file and " +
      "many small ones, beside a tar | cat | cat | tar pipeline",
  )
  .option(
    "--json",
    "print JSON rows {name, bytes, files, seconds, mbps, filesPerSec, runs} instead of a table",
  )
  .option("--bytes <size>", "size of the big file", parseSize, parseSize("1G"))
  .option("--files <n>", "number of small files", countOf("files", 1, 99_999), 10_000)
  .option("--file-size <size>", "size of each small file", parseSize, parseSize("4K"))
  .option(
    "--rounds <n>",
    "runs of each row (the baseline and ours take turns going first); rows are medians",
    parseRounds,
    3,
  )
  .addHelpText(
    "after",
    "\nTargets: big file >= 80% of the tar pipeline; small files >= 5,000 files/s.\n\n" +
      "Examples:\n  qrx bench copy\n  qrx bench copy --json --bytes 256M --files 2000\n",
  )
  .action(async (options: CopyCommandOptions) => {
    const { runCopyBench, printCopyBench } = await import("../bench/copy.ts");
    const rows = await runCopyBench({
      bytes: options.bytes,
      files: options.files,
      fileBytes: options.fileSize,
      rounds: options.rounds,
      progress: !options.json,
    });
    printRows(rows, options.json, printCopyBench);
  });

bench
  .command("latency")
  .description(
    "the fixed cost of small things in a lab: calls each way, a 1-byte qvm-copy, a $dispvm " +
      "call, qrx run, --help, the by-hand set-up; beside sh and bun starts",
  )
  .option("--json", "print JSON rows {name, calls, medianMs, p99Ms, targetMs, program?, ...}")
  .option("--calls <n>", "runs per row (--help: at most 10 per program)", countOf("calls", 1), 50)
  .option(
    "--warm-up <n>",
    "untimed calls through a call row's processes between its cold runs and its timed ones",
    countOf("calls", 0),
    200,
  )
  .option("--trace <file>", "the lab's programs write a timing trace to FILE (see qrx trace)")
  .addHelpText(
    "after",
    "\nTargets (medians): dom0->VM 5 ms, VM->dom0 4, VM->VM 4, 1-byte qvm-copy 30, $dispvm 50," +
      " qrx run 15, --help 15.\n\nExamples:\n  qrx bench latency\n" +
      "  qrx bench latency --json --calls 20 --trace /tmp/latency.jsonl\n",
  )
  .action((options: { json?: boolean; calls: number; warmUp: number; trace?: string }) =>
    guarded(async () => {
      if (options.trace) await traceInto(options.trace);
      const { runLatencyBench, printLatencyBench } = await import("../bench/latency.ts");
      const { calls, warmUp } = options;
      const rows = await runLatencyBench({ calls, warmUp, progress: !options.json });
      printRows(rows, options.json, printLatencyBench);
    }),
  );

bench
  .command("memory")
  .description("idle RSS and PSS of every process of the default lab and of a 20-domain lab")
  .option("--json", "print JSON rows {name, domains, processes, rssMB, pssMB}")
  .addHelpText("after", "\nExamples:\n  qrx bench memory\n  qrx bench memory --json\n")
  .action(async (options: { json?: boolean }) => {
    const { runMemoryBench, printMemoryBench } = await import("../bench/memory.ts");
    const rows = await runMemoryBench({ progress: !options.json });
    printRows(rows, options.json, printMemoryBench);
  });

program
  .command("demo")
  .description(
    "bring up the default lab in a fresh directory, make calls as a user " +
      "would (allowed, denied, DisposableVM, a large transfer), take it down",
  )
  .option("--bytes <size>", "size of the large transfer", parseSize, parseSize("1G"))
  .option("--dir <dir>", "lab state directory (default: a new temporary one, removed afterwards)")
  .addHelpText("after", "\nExamples:\n  qrx demo\n  qrx demo --bytes 256M\n")
  .action(async (options: { bytes: number; dir?: string }) => {
    const { runLabDemo } = await import("../demo/lab-demo.ts");
    process.exitCode = await runLabDemo({ bytes: options.bytes, dir: options.dir });
  });

addLabCommands(program);
addConformanceCommand(program);
addPolicyCommands(program, bench);
addReliabilityBenches(bench, parseSize);
addTraceCommand(program);
addToolCommands(program);

void runUntilBrokenPipe(() => program.parseAsync(process.argv));
