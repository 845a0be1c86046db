// `qrx bench call`: whole qrexec calls through the real programs (bin/), in a default lab of
// its own (`qrx lab up` on /dev/shm: dom0's policy daemon, per VM a qrexec-agent and a
// qrexec-daemon, the lab's services), torn down at the end.
//
// Throughput: `bytes` through qrexec-client-vm to a service that discards them (to-service) and
// from a service that produces them (from-service), on the shm transport, beside the 3-hop pipe
// `head | cat | cat | cat > /dev/null` (same process count) in the same run. Every row is one
// shell pipeline timed from spawn to exit, so the calls pay for their set-up like any user.
//
// Latency: `calls` sequential calls of a service that echoes one line, client process start
// included (spawn to exit, output checked), VM->VM, VM->dom0 and dom0->VM, beside the start of a
// bare `bun -e 0`. See docs/benchmarks.md ("Calls") for the exact commands.
import { closeSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { labDown, labLayout, labUp } from "../lab/control.ts";
import { COMPILED, entryCommand } from "../install-paths.ts";
import { BIN_DIR, domainEnv } from "../lab/environment.ts";
import type { LabLayout } from "../lab/layout.ts";
import { socketPair } from "../native.ts";
import { median, percentile } from "../stats.ts";
import { runToEnd } from "../io/run-to-end.ts";
import { printTable } from "./table.ts";
import { inTurns, ratioLine } from "./rounds.ts";
import { refreshBundles } from "./fresh-build.ts";

export interface CallThroughputRow {
  name: "to-service" | "from-service" | "baseline:pipe3" | "baseline:socketpair+pipe2";
  bytes: number;
  /** The median round's seconds; mbps follows from it. */
  seconds: number;
  mbps: number;
  /** Seconds of each round, in the order they ran. */
  runs: number[];
}

export interface CallLatencyRow {
  name: "latency-vm-vm" | "latency-vm-dom0" | "latency-dom0-vm" | "baseline:bun-start";
  calls: number;
  medianMs: number;
  p99Ms: number;
}

export type CallBenchRow = CallThroughputRow | CallLatencyRow;

export interface CallBenchOptions {
  bytes: number;
  calls: number;
  /** Runs of each throughput row; a row is their median. */
  rounds: number;
  progress: boolean;
}

const CALLER = "work";
const TARGET = "vault";
/** Bytes moved by the correctness check before the timed rows (also a warm-up). */
const CHECK_BYTES = 16 << 20;
const LINE = "ping\n";
/** Starting Bun and exiting; in the single executable, starting that executable. */
const BUN_START = COMPILED
  ? entryCommand("qrx-noop", [])
  : { cmd: [join(BIN_DIR, "..", "node_modules", ".bin", "bun"), "-e", "0"], argv0: undefined };

/** A running lab: the environment of each of its domains, and its logs for error messages. */
interface Lab {
  layout: LabLayout;
  env: (domain: string) => Record<string, string>;
}

/** The shell pipelines, as documented; `client-vm` is bin/qrexec-client-vm. */
export function throughputCommands(
  bytes: number,
  clientVm = "qrexec-client-vm",
): Record<Exclude<CallThroughputRow["name"], "baseline:socketpair+pipe2">, string> {
  return {
    "baseline:pipe3": `head -c ${bytes} /dev/zero | cat | cat | cat > /dev/null`,
    "to-service": `head -c ${bytes} /dev/zero | ${clientVm} ${TARGET} bench.Sink`,
    "from-service": `${clientVm} ${TARGET} test.Source+${bytes} < /dev/null | cat > /dev/null`,
  };
}

/**
 * Runs `command` under bash with pipefail in `domain`'s environment; seconds from spawn to exit.
 */
async function timePipeline(
  lab: Lab,
  domain: string,
  command: string,
): Promise<{ seconds: number; stdout: string }> {
  const argv = ["bash", "-c", `set -o pipefail; ${command}`];
  const { code, stdout, stderr, ms } = await runToEnd(argv, { env: lab.env(domain) });
  if (code !== 0)
    throw new Error(`\`${command}\` exited ${code}: ${stderr}\n(lab logs: ${lab.layout.dir})`);
  return { seconds: ms / 1000, stdout };
}

/**
 * The 3-hop pipe with its first hop a unix socketpair, as a service's stdout is (§5.5):
 * `head -c N /dev/zero` writing into the socketpair, `cat | cat | cat > /dev/null` reading it.
 * Same processes as from-service; what the socketpair alone costs the pipe.
 */
async function timeSocketpairPipe(bytes: number): Promise<number> {
  const [writer, reader] = socketPair();
  const start = performance.now();
  const children = [];
  try {
    children.push(
      Bun.spawn(["head", "-c", String(bytes), "/dev/zero"], {
        stdio: ["ignore", writer, "inherit"],
      }),
    );
    children.push(
      Bun.spawn(["bash", "-c", "cat | cat | cat > /dev/null"], {
        stdio: [reader, "ignore", "inherit"],
      }),
    );
  } finally {
    // The children hold their own copies; ours would keep the reader from seeing EOF.
    closeSync(writer);
    closeSync(reader);
  }
  const codes = await Promise.all(children.map((child) => child.exited));
  if (codes.some((code) => code !== 0))
    throw new Error(`the socketpair pipeline exited ${codes.join(", ")}`);
  return (performance.now() - start) / 1000;
}

function throughputRow(
  name: CallThroughputRow["name"],
  bytes: number,
  runs: number[],
): CallThroughputRow {
  const seconds = median(runs);
  return { name, bytes, seconds, mbps: bytes / 1e6 / seconds, runs };
}

const THROUGHPUT_ROWS = [
  "baseline:pipe3",
  "to-service",
  "from-service",
  "baseline:socketpair+pipe2",
] as const;

/**
 * The order of the throughput rows in round `round`: rotated by one each round, so no row is
 * always the one that runs first (after the lab's start) or right after a given other one.
 */
export function roundOrder(round: number): Array<CallThroughputRow["name"]> {
  return inTurns(THROUGHPUT_ROWS, round);
}

/** `rounds` runs of every throughput row, in turns; the rows in THROUGHPUT_ROWS order. */
async function throughputRows(
  lab: Lab,
  options: CallBenchOptions,
  say: (text: string) => void,
): Promise<CallThroughputRow[]> {
  const commands = throughputCommands(options.bytes);
  const runs = new Map<CallThroughputRow["name"], number[]>(
    THROUGHPUT_ROWS.map((name) => [name, []]),
  );
  for (let round = 0; round < options.rounds; round++) {
    for (const name of roundOrder(round)) {
      const seconds =
        name === "baseline:socketpair+pipe2"
          ? await timeSocketpairPipe(options.bytes)
          : (await timePipeline(lab, CALLER, commands[name])).seconds;
      runs.get(name)!.push(seconds);
      say(`  round ${round + 1}, ${name}: ${(options.bytes / 1e6 / seconds).toFixed(0)} MB/s`);
    }
  }
  return THROUGHPUT_ROWS.map((name) => throughputRow(name, options.bytes, runs.get(name)!));
}

/** `calls` runs of `argv`, one after another; each must print exactly `expect` and exit 0. */
async function measureLatency(
  lab: Lab,
  name: CallLatencyRow["name"],
  domain: string,
  argv: string[],
  calls: number,
  expect: string,
  argv0?: string,
): Promise<CallLatencyRow> {
  const env = lab.env(domain);
  const input = new TextEncoder().encode(LINE);
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const { code, stdout, stderr, ms } = await runToEnd(argv, { argv0, env, stdin: input });
    times.push(ms);
    if (code !== 0 || stdout !== expect) {
      throw new Error(
        `${name}: call ${i + 1} exited ${code} with ${JSON.stringify(stdout)} ` +
          `(expected ${JSON.stringify(expect)}): ${stderr}`,
      );
    }
  }
  times.sort((a, b) => a - b);
  return { name, calls, medianMs: median(times), p99Ms: percentile(times, 99) };
}

/** The to-service row's sink: `cat > /dev/null`, as the pipe's last hop (the lab's test.Sink is
 * `wc -c`, which reads 16 KiB at a time against cat's 128 KiB). Both files survive `lab up`. */
function addBenchSink(layout: LabLayout): void {
  mkdirSync(layout.rpcDir(TARGET), { recursive: true });
  writeFileSync(join(layout.rpcDir(TARGET), "bench.Sink"), "#!/bin/sh\nexec cat > /dev/null\n", {
    mode: 0o755,
  });
  mkdirSync(layout.policyDir, { recursive: true });
  writeFileSync(
    join(layout.policyDir, "40-bench.policy"),
    `bench.Sink * ${CALLER} ${TARGET} allow\n`,
  );
}

async function startLab(layout: LabLayout): Promise<Lab> {
  addBenchSink(layout);
  const status = await labUp(layout, { isolation: "none" });
  const transport = status.transport === "socket" ? "socket" : "shm";
  const envs = new Map(
    status.domains.map((domain) => [domain.name, domainEnv(layout, domain, transport)]),
  );
  return {
    layout,
    env: (name) => {
      const env = envs.get(name);
      if (!env) throw new Error(`the lab has no domain ${name}`);
      return env;
    },
  };
}

/** Byte counts through both directions, checked with `wc -c` at the far end. */
async function checkBytes(lab: Lab, clientVm: string): Promise<void> {
  const to = await timePipeline(
    lab,
    CALLER,
    `head -c ${CHECK_BYTES} /dev/zero | ${clientVm} ${TARGET} test.Sink`,
  );
  const from = await timePipeline(
    lab,
    CALLER,
    `${clientVm} ${TARGET} test.Source+${CHECK_BYTES} < /dev/null | wc -c`,
  );
  for (const [direction, result] of [
    ["to-service", to],
    ["from-service", from],
  ] as const) {
    if (Number(result.stdout.trim()) !== CHECK_BYTES) {
      throw new Error(
        `${direction} check: ${result.stdout.trim()} bytes arrived, ${CHECK_BYTES} sent`,
      );
    }
  }
}

function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30 && bytes % (1 << 30) === 0) return `${bytes / (1 << 30)} GiB`;
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

function describe(row: CallBenchRow): string {
  if ("mbps" in row)
    return `${row.name}: ${row.mbps.toFixed(0)} MB/s (${row.seconds.toFixed(3)} s)`;
  return (
    `${row.name}: median ${row.medianMs.toFixed(1)} ms, ` +
    `p99 ${row.p99Ms.toFixed(1)} ms (${row.calls} calls)`
  );
}

/** Call latency: Bun's own start-up as the floor, then VM -> VM, VM -> dom0 and dom0 -> VM. */
async function latencyRows(
  lab: Lab,
  calls: number,
  record: (row: CallBenchRow) => void,
): Promise<void> {
  // The floor under every Bun program: starting Bun itself (`bun -e 0`, no output; touching
  // process.stdout alone would add ~10 ms of Bun's stream set-up).
  const { cmd, argv0 } = BUN_START;
  record(await measureLatency(lab, "baseline:bun-start", "dom0", cmd, calls, "", argv0));
  const onPath = (domain: string, program: string) =>
    Bun.which(program, { PATH: lab.env(domain).PATH }) ?? program;
  record(
    await measureLatency(
      lab,
      "latency-vm-vm",
      CALLER,
      [onPath(CALLER, "qrexec-client-vm"), TARGET, "test.Echo"],
      calls,
      LINE,
    ),
  );
  record(
    await measureLatency(
      lab,
      "latency-vm-dom0",
      CALLER,
      [onPath(CALLER, "qrexec-client-vm"), "dom0", "test.Echo"],
      calls,
      LINE,
    ),
  );
  record(
    await measureLatency(
      lab,
      "latency-dom0-vm",
      "dom0",
      [onPath("dom0", "qrexec-client"), "-d", TARGET, "DEFAULT:QUBESRPC test.Echo dom0"],
      calls,
      LINE,
    ),
  );
}

export async function runCallBench(options: CallBenchOptions): Promise<CallBenchRow[]> {
  const rows: CallBenchRow[] = [];
  const record = (row: CallBenchRow) => {
    rows.push(row);
    if (options.progress) process.stderr.write(`  ${describe(row)}\n`);
  };
  const say = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  // As a user of the lab runs them: found on the domain's PATH (the native front end of
  // qrexec-client-vm when it is built, else bin/'s launcher).
  const clientVm = "qrexec-client-vm";
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const rebuilt = refreshBundles();
  if (rebuilt !== "") say(rebuilt);
  const layout = labLayout(mkdtempSync(join(base, "qrx-bench-call-")));
  say(`starting a default lab in ${layout.dir} (shm vchans)`);
  try {
    const lab = await startLab(layout);
    say(`checking byte counts with ${formatBytes(CHECK_BYTES)} each way`);
    await checkBytes(lab, clientVm);

    say(`moving ${formatBytes(options.bytes)} per run, ${options.rounds} rounds`);
    // Baselines and calls in turns, in one run: all see the same machine and load.
    for (const row of await throughputRows(lab, options, say)) record(row);

    say(`${options.calls} calls per latency row`);
    await latencyRows(lab, options.calls, record);
  } finally {
    // A lab that fails to go down must not hide the bench's own result or error.
    await labDown(layout).catch(() => {});
    rmSync(layout.dir, { recursive: true, force: true });
  }
  return rows;
}

/**
 * One line per target we have rows for (issue 17 item 5): to-service >= 90% of the 3-hop pipe,
 * from-service >= 90% of the same pipe with a socketpair first hop (a service's stdout, §5.5);
 * VM->VM <= 5 ms.
 */
function targetLines(rows: CallBenchRow[]): string[] {
  const find = (name: string) => rows.find((row) => row.name === name);
  const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
  const lines: string[] = [];
  for (const [name, baseline] of [
    ["to-service", "baseline:pipe3"],
    ["from-service", "baseline:socketpair+pipe2"],
  ] as const) {
    const row = find(name) as CallThroughputRow | undefined;
    const base = find(baseline) as CallThroughputRow | undefined;
    if (!row || !base) continue;
    lines.push(ratioLine([name, baseline], row, base, 0.9));
  }
  const vmVm = find("latency-vm-vm") as CallLatencyRow | undefined;
  if (vmVm)
    lines.push(
      `VM->VM median latency: ${vmVm.medianMs.toFixed(1)} ` +
        `ms (target <= 5 ms): ${verdict(vmVm.medianMs <= 5)}`,
    );
  return lines;
}

export function printCallBench(rows: CallBenchRow[]): void {
  const throughput = rows.filter((row): row is CallThroughputRow => "mbps" in row);
  const latency = rows.filter((row): row is CallLatencyRow => "medianMs" in row);
  if (throughput.length > 0) {
    printTable([
      ["name", "bytes", "MB/s", "seconds", "runs (s)"],
      ...throughput.map((r) => [
        r.name,
        formatBytes(r.bytes),
        r.mbps.toFixed(0),
        r.seconds.toFixed(3),
        r.runs.map((seconds) => seconds.toFixed(3)).join(" "),
      ]),
    ]);
    console.log(
      "seconds: the whole shell pipeline, spawn to exit (call set-up included), " +
        "the median of the runs\n",
    );
  }
  if (latency.length > 0) {
    printTable([
      ["name", "calls", "median ms", "p99 ms"],
      ...latency.map((r) => [r.name, String(r.calls), r.medianMs.toFixed(1), r.p99Ms.toFixed(1)]),
    ]);
    console.log("each call: spawn of the client to its exit, one line echoed and checked\n");
  }
  for (const line of targetLines(rows)) console.log(line);
}
