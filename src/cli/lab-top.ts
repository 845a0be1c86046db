// `qrx lab top`: a refreshing view of a lab's running calls (source -> target, service, ring
// sizes, bytes each way and their rate) and each domain's calls per second: what someone tuning
// buffer sizes watches while an experiment runs. The calls come from the agents' status files
// (qrexec-agent --status-file, src/agent/call-status.ts), the counts from `qrx lab status`.
import { readFileSync } from "node:fs";
import { type Command, InvalidArgumentError } from "commander";
import type { CallStatus, RunningCall } from "../agent/call-status.ts";
import type { LabStatus } from "../lab/admin.ts";
import type { LabLayout } from "../lab/layout.ts";

/** A status file not rewritten for this long belongs to an agent that is gone. */
const STALE_MS = 5_000;

interface Sample {
  at: number;
  status: LabStatus;
  calls: Array<RunningCall & { target: string }>;
}

export interface TopCall extends RunningCall {
  target: string;
  ageSeconds: number;
  /** Bytes per second over the last interval (since the call started, if it is newer). */
  toServiceRate: number;
  fromServiceRate: number;
}

export interface TopFrame {
  dir: string;
  at: number;
  intervalSeconds: number;
  calls: TopCall[];
  domains: Array<{ name: string; state: string; calls: number; callsPerSecond: number }>;
}

function readCallStatus(path: string, now: number): CallStatus | null {
  try {
    const status = JSON.parse(readFileSync(path, "utf8")) as CallStatus;
    return now - status.updatedAt > STALE_MS || !Array.isArray(status.calls) ? null : status;
  } catch {
    return null;
  }
}

async function takeSample(layout: LabLayout): Promise<Sample> {
  const { labStatus } = await import("../lab/control.ts");
  const status = await labStatus(layout);
  const at = Date.now();
  const calls: Sample["calls"] = [];
  for (const domain of status.domains) {
    if (domain.state !== "Running") continue;
    const running = readCallStatus(layout.callStatusFile(domain.name), at);
    for (const call of running?.calls ?? []) calls.push({ ...call, target: domain.name });
  }
  return { at, status, calls };
}

const callKey = (call: Sample["calls"][number]) =>
  `${call.target}|${call.source}|${call.service}|${call.startedAt}`;

/** The frame shown after `current`: rates are differences to `previous`. */
export function topFrame(previous: Sample, current: Sample): TopFrame {
  const before = new Map(previous.calls.map((call) => [callKey(call), call]));
  const seconds = Math.max((current.at - previous.at) / 1000, 1e-3);
  const calls = current.calls.map((call) => {
    const earlier = before.get(callKey(call));
    const span = earlier ? seconds : Math.max((current.at - call.startedAt) / 1000, 1e-3);
    const rate = (now: number, then: number) => Math.max(0, now - then) / span;
    return {
      ...call,
      ageSeconds: (current.at - call.startedAt) / 1000,
      toServiceRate: rate(call.bytesToService, earlier?.bytesToService ?? 0),
      fromServiceRate: rate(call.bytesFromService, earlier?.bytesFromService ?? 0),
    };
  });
  const countBefore = new Map(previous.status.domains.map((domain) => [domain.name, domain.calls]));
  const domains = current.status.domains.map((domain) => ({
    name: domain.name,
    state: domain.state,
    calls: domain.calls,
    callsPerSecond:
      Math.max(0, domain.calls - (countBefore.get(domain.name) ?? domain.calls)) / seconds,
  }));
  return { dir: current.status.dir, at: current.at, intervalSeconds: seconds, calls, domains };
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

function formatRing(bytes: number): string {
  return bytes % 1024 === 0 ? `${bytes / 1024}K` : String(bytes);
}

export function renderFrame(
  frame: TopFrame,
  table: (header: string[], rows: string[][]) => string,
): string {
  const time = new Date(frame.at).toISOString().slice(11, 19);
  const count = `${frame.calls.length} call${frame.calls.length === 1 ? "" : "s"} running`;
  const head = `qrx lab top: ${frame.dir}, ${time}, ${count}`;
  const callRows = frame.calls.map((call) => [
    `${call.source} -> ${call.target}`,
    call.service,
    `${formatRing(call.toServiceRingBytes)}/${formatRing(call.fromServiceRingBytes)}`,
    formatBytes(call.bytesToService),
    formatBytes(call.bytesFromService),
    `${formatBytes(call.toServiceRate)}/s`,
    `${formatBytes(call.fromServiceRate)}/s`,
    `${call.ageSeconds.toFixed(1)}s`,
  ]);
  const callHeader = [
    "CALL",
    "SERVICE",
    "RINGS TO/FROM",
    "TO SERVICE",
    "FROM SERVICE",
    "RATE TO",
    "RATE FROM",
    "AGE",
  ];
  const calls = callRows.length > 0 ? table(callHeader, callRows) : "(no call running)";
  const domainRows = frame.domains
    .filter((domain) => domain.state === "Running" || domain.calls > 0)
    .map((domain) => [
      domain.name,
      domain.state,
      String(domain.calls),
      domain.callsPerSecond.toFixed(1),
    ]);
  return `${head}\n\n${calls}\n\n${table(["DOMAIN", "STATE", "CALLS", "CALLS/S"], domainRows)}\n`;
}

function positiveNumber(what: string, integer: boolean) {
  return (text: string): number => {
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isSafeInteger(value))) {
      throw new InvalidArgumentError(
        `"${text}" is not a ${integer ? "positive whole number" : "positive number"} of ${what}`,
      );
    }
    return value;
  };
}

interface TopOptions {
  dir?: string;
  interval: number;
  once?: boolean;
  count?: number;
  json?: boolean;
}

async function runTop(options: TopOptions): Promise<void> {
  const { labLayout, formatTable } = await import("../lab/control.ts");
  const layout = labLayout(options.dir);
  const frames = options.json || options.once ? 1 : (options.count ?? Infinity);
  const clear = process.stdout.isTTY && frames > 1 ? "\x1b[H\x1b[2J" : "";
  let previous = await takeSample(layout);
  for (let shown = 0; shown < frames; shown++) {
    await Bun.sleep(options.interval * 1000);
    const current = await takeSample(layout);
    const frame = topFrame(previous, current);
    previous = current;
    if (options.json) process.stdout.write(`${JSON.stringify(frame, null, 2)}\n`);
    else
      process.stdout.write(
        `${clear}${shown > 0 && !clear ? "\n" : ""}${renderFrame(frame, formatTable)}`,
      );
  }
}

export function addLabTopCommand(lab: Command): void {
  lab
    .command("top")
    .description(
      "watch a lab: each running call (source -> target, service, rings, bytes each way, " +
        "rate) and calls/s per domain",
    )
    .option(
      "--dir <dir>",
      "lab state directory (default $QRX_DIR, else $XDG_RUNTIME_DIR/qrx, else ~/.local/state/qrx)",
    )
    .option(
      "--interval <seconds>",
      "time between frames; rates are over it",
      positiveNumber("seconds", false),
      1,
    )
    .option(
      "--count <n>",
      "stop after N frames (default: until Ctrl-C)",
      positiveNumber("frames", true),
    )
    .option("--once", "print one frame (rates over one interval) and exit")
    .option(
      "--json",
      "print one frame as JSON and exit: {dir, at, intervalSeconds, calls, domains}",
    )
    .addHelpText(
      "after",
      `
Calls are shown on the side that serves them (a VM's agent); calls into dom0 are counted in
CALLS/S but not listed. Bytes are those on the call's data vchan, message headers included;
the agents update them twice a second.

Examples:
  qrx lab top
  qrx lab top --once --interval 0.5
  qrx lab top --json --dir /tmp/lab
`,
    )
    .action(async (options: TopOptions) => {
      const { LabError } = await import("../lab/control.ts");
      try {
        await runTop(options);
      } catch (error) {
        if (!(error instanceof LabError)) throw error;
        process.stderr.write(`qrx: ${error.message}\n`);
        process.exitCode = error.exitCode;
      }
    });
}
