// The TypeScript half of `npm run fuzz`: runs each fast-check harness of test/fuzz/ for a time,
// prints one JSON line per harness ({name, executions, seconds, executionsPerSecond, failures})
// and keeps a failing input in test/fuzz/corpus/<harness>/ (then exits 1).
//   bun scripts/fuzz-ts.ts [--seconds N] [harness...]

import fc from "fast-check";
import { keep } from "../test/fuzz/corpus.ts";
import { harnesses } from "../test/fuzz/harnesses.ts";

function parseArgs(argv: string[]): { seconds: number; only: string[] } {
  let seconds = Number(process.env.QRX_FUZZ_SECONDS ?? 60);
  const only: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--seconds") seconds = Number(argv[++i]);
    else only.push(argv[i]!);
  }
  if (!Number.isFinite(seconds) || seconds <= 0)
    throw new Error("--seconds needs a positive number");
  return { seconds, only };
}

const { seconds, only } = parseArgs(process.argv.slice(2));
let failed = false;
for (const harness of harnesses) {
  if (only.length > 0 && !only.includes(harness.name)) continue;
  let executions = 0;
  const started = performance.now();
  const result = fc.check(
    fc.property(harness.arbitrary, (input) => {
      executions++;
      harness.property(input);
    }),
    {
      numRuns: Number.MAX_SAFE_INTEGER,
      interruptAfterTimeLimit: seconds * 1000,
      markInterruptAsFailure: false,
    },
  );
  const elapsed = (performance.now() - started) / 1000;
  const row = {
    name: harness.name,
    executions,
    seconds: Math.round(elapsed),
    executionsPerSecond: Math.round(executions / elapsed),
    failures: 0,
  };
  if (result.failed && result.counterexample !== null) {
    row.failures = 1;
    failed = true;
    const path = keep(harness, result.counterexample[0] as never);
    console.error(
      `${harness.name}: property failed; input kept in ${path}\n${fc.defaultReportMessage(result)}`,
    );
  }
  console.log(JSON.stringify(row));
}
process.exit(failed ? 1 : 0);
