// `qrx trace FILE`: the calls recorded in a QRX_TRACE file as waterfalls and a per-stage summary
// (src/trace-report.ts), optionally drawn as SVG (src/trace-svg.ts).
import { InvalidArgumentError, type Command } from "commander";

interface TraceOptions {
  svg?: string;
  limit: number;
  match?: string;
}

function positive(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`"${text}" is not a positive number`);
  }
  return value;
}

async function showTrace(file: string, options: TraceOptions): Promise<number> {
  const { readFileSync, writeFileSync } = await import("node:fs");
  const { openFailure, unwritable } = await import("./output-files.ts");
  if (options.svg) {
    const why = unwritable(options.svg);
    if (why !== null) {
      process.stderr.write(`qrx trace: cannot write ${options.svg}: ${why}\n`);
      return 1;
    }
  }
  const { groupCalls, parseTrace, summaryText, waterfallText } = await import("../trace-report.ts");
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    process.stderr.write(`qrx trace: cannot read ${file}: ${openFailure(error, false)}\n`);
    return 1;
  }
  const { events, badLines } = parseTrace(text);
  if (badLines > 0) {
    const what = `${badLines} line(s) in ${file} are not trace events`;
    process.stderr.write(`qrx trace: ${what}; skipped\n`);
  }
  const match = options.match;
  const calls = groupCalls(events).filter((call) => !match || call.title.includes(match));
  if (calls.length === 0) {
    process.stderr.write(`qrx trace: no calls in ${file}${match ? ` matching "${match}"` : ""}\n`);
    return 1;
  }
  const shown = calls.slice(-options.limit);
  for (const call of shown) console.log(`${waterfallText(call).join("\n")}\n`);
  const hidden = calls.length - shown.length;
  if (hidden > 0) console.log(`(${hidden} earlier calls not drawn; --limit N)\n`);
  console.log(summaryText(calls).join("\n"));
  if (options.svg) {
    const { waterfallSvg } = await import("../trace-svg.ts");
    writeFileSync(options.svg, waterfallSvg(shown));
    console.log(`\nwaterfalls of ${shown.length} call(s) drawn in ${options.svg}`);
  }
  return 0;
}

export function addTraceCommand(program: Command): void {
  program
    .command("trace")
    .description(
      "show the calls in a QRX_TRACE file: a waterfall per call (each stage, the process and " +
        "domain that reached it) and the median per stage",
    )
    .argument("<file>", "a trace written by programs run with QRX_TRACE=FILE (or --trace FILE)")
    .option("--svg <out>", "also draw the waterfalls as an SVG")
    .option("--limit <n>", "waterfalls of the last N calls (the summary covers all)", positive, 10)
    .option("--match <text>", "only calls whose title (source -> target service) contains TEXT")
    .addHelpText(
      "after",
      `
Stages: client-start, trigger-sent, agent-trigger, daemon-received, policy-asked/answered,
exec-request-sent, exec-request, service-connect-sent, call-allowed, data-connected,
service-spawned, first-byte-sent/received, eof-sent/received, exit-sent/received, exit-code,
teardown (and process-start for a client started as its own Bun process).

Examples:
  QRX_TRACE=/tmp/t.jsonl qrx lab up && qrx run work -- qrexec-client-vm vault test.Add <<< '1 2'
  qrx trace /tmp/t.jsonl --svg calls.svg
  qrx bench latency --calls 20 --trace /tmp/t.jsonl && qrx trace /tmp/t.jsonl --match vault
`,
    )
    .action(async (file: string, options: TraceOptions) => {
      process.exitCode = await showTrace(file, options);
    });
}
