// `qrx bench vchan`: shm vchan throughput between two processes, beside a pipe and a unix
// socketpair measured in the same run, so the comparison holds on whatever machine runs it.
// Every row is two real processes moving `bytes` in 64 KiB blocks; `seconds` is the receiver's
// clock, from the moment the sender is connected (first byte for the kernel channels) to the
// last byte received. See docs/benchmarks.md.
import { closeSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeerProcess, type PeerEvent } from "../tools/peer-process.ts";
import { openChannel, type ChannelKind } from "./baseline-peer.ts";
import { entryCommand } from "../install-paths.ts";
import { printTable } from "./table.ts";

export interface BenchRow {
  name: string;
  ringBytes: number;
  bytes: number;
  seconds: number;
  mbps: number;
}

const FIRST_PORT = 4100;

function row(name: string, ringBytes: number, bytes: number, seconds: number): BenchRow {
  return { name, ringBytes, bytes, seconds, mbps: bytes / 1e6 / seconds };
}

/** Generous: even 50 MB/s finishes well inside it; only a hung peer hits it. */
function timeoutMs(bytes: number): number {
  return 60_000 + bytes / 50_000;
}

function expectDone(event: PeerEvent, side: string, bytes: number): PeerEvent {
  if (event.event !== "done") throw new Error(`${side} failed: ${JSON.stringify(event)}`);
  if (event.bytes !== bytes)
    throw new Error(`${side} moved ${String(event.bytes)} bytes, expected ${bytes}`);
  return event;
}

async function measureShm(
  ringBytes: number,
  bytes: number,
  port: number,
  dir: string,
): Promise<BenchRow> {
  const common = { dir, port, ringBytes, bytes, verify: false };
  const receiver = new PeerProcess({
    ...common,
    role: "server",
    mode: "recv",
    localDomain: 0,
    remoteDomain: 5,
  });
  let sender: PeerProcess | undefined;
  try {
    await receiver.waitFor("listening");
    sender = new PeerProcess({
      ...common,
      role: "client",
      mode: "send",
      localDomain: 5,
      remoteDomain: 0,
    });
    const [received, sent] = await Promise.all([
      receiver.result(timeoutMs(bytes)),
      sender.result(timeoutMs(bytes)),
    ]);
    // The receiver returns "done" only once its read loop has counted all `bytes` in; a short
    // stream ends in EPIPE ("error") instead.
    expectDone(sent, "shm sender", bytes);
    const done = expectDone(received, "shm receiver", bytes);
    // The ring actually used: a size that is not a power of two is rounded up.
    return row("shm", done.readRingBytes as number, bytes, done.seconds as number);
  } finally {
    receiver.kill();
    sender?.kill();
    await Promise.all([receiver.exited, sender?.exited]);
  }
}

async function measureBaseline(kind: ChannelKind, bytes: number): Promise<BenchRow> {
  const channel = openChannel(kind);
  const spawn = (role: "write" | "read", fd: number) => {
    const { cmd, argv0 } = entryCommand("qrx-baseline-peer", [role, String(bytes)]);
    return Bun.spawn(cmd, {
      argv0,
      // The channel lands on fd 3, where baseline-peer.ts looks for it (CHANNEL_FD).
      stdio: ["ignore", "pipe", "inherit", fd],
    });
  };
  let writer: ReturnType<typeof spawn> | undefined;
  let reader: ReturnType<typeof spawn> | undefined;
  try {
    reader = spawn("read", channel.readFd);
    writer = spawn("write", channel.writeFd);
  } finally {
    // Our copies would keep the channel open and the reader from ever seeing EOF.
    closeSync(channel.readFd);
    closeSync(channel.writeFd);
  }
  const [output, readerCode, writerCode] = await Promise.all([
    new Response(reader.stdout).text(),
    reader.exited,
    writer.exited,
  ]);
  if (readerCode !== 0 || writerCode !== 0) {
    throw new Error(`${kind} baseline: reader exited ${readerCode}, writer ${writerCode}`);
  }
  const result = JSON.parse(output) as { bytes: number; seconds: number };
  if (result.bytes !== bytes)
    throw new Error(`${kind} baseline moved ${result.bytes} bytes, expected ${bytes}`);
  return row(`baseline:${kind}`, channel.bufferBytes, bytes, result.seconds);
}

function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30 && bytes % (1 << 30) === 0) return `${bytes / (1 << 30)} GiB`;
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

function describe(r: BenchRow): string {
  return (
    `${r.name} ${formatBytes(r.ringBytes)}: ` +
    `${r.mbps.toFixed(0)} MB/s (${r.seconds.toFixed(3)} s)`
  );
}

export async function runVchanBench(options: {
  sizes: number[];
  bytes: number;
  progress: boolean;
}): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const record = (r: BenchRow) => {
    rows.push(r);
    if (options.progress) process.stderr.write(`  ${describe(r)}\n`);
  };
  if (options.progress)
    process.stderr.write(`moving ${formatBytes(options.bytes)} per measurement\n`);
  // Baselines first and shm after, in one run: both see the same machine and the same load.
  for (const kind of ["pipe", "socketpair"] as const)
    record(await measureBaseline(kind, options.bytes));
  const dir = mkdtempSync(join(tmpdir(), "qrx-bench-"));
  try {
    for (const [i, size] of options.sizes.entries()) {
      record(await measureShm(size, options.bytes, FIRST_PORT + i, dir));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** "64 KiB ring vs socketpair: 1.40x (target >= 1x): met", one line per target we have rows for. */
function targetLines(rows: BenchRow[]): string[] {
  const shm = (ring: number) => rows.find((r) => r.name === "shm" && r.ringBytes === ring);
  const pipe = rows.find((r) => r.name === "baseline:pipe");
  const socketpair = rows.find((r) => r.name === "baseline:socketpair");
  const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
  const lines: string[] = [];
  const ring64k = shm(64 * 1024);
  if (ring64k && socketpair) {
    const ratio = ring64k.mbps / socketpair.mbps;
    lines.push(
      `64 KiB ring vs socketpair: ${ratio.toFixed(2)}x (target >= 1x): ${verdict(ratio >= 1)}`,
    );
  }
  const ring1m = shm(1 << 20);
  if (ring1m && pipe) {
    const ratio = ring1m.mbps / pipe.mbps;
    lines.push(`1 MiB ring vs pipe: ${ratio.toFixed(2)}x (target >= 3x): ${verdict(ratio >= 3)}`);
  }
  const small = rows.filter((r) => r.name === "shm" && r.ringBytes >= 1024 && r.ringBytes <= 4096);
  if (small.length > 0) {
    const slowest = Math.min(...small.map((r) => r.mbps));
    lines.push(
      `1-4 KiB rings, slowest: ${slowest.toFixed(0)} MB/s ` +
        `(target >= 300 MB/s): ${verdict(slowest >= 300)}`,
    );
  }
  return lines;
}

export function printVchanBench(rows: BenchRow[]): void {
  const table = [
    ["name", "ring", "MB/s", "seconds"],
    ...rows.map((r) => [r.name, formatBytes(r.ringBytes), r.mbps.toFixed(0), r.seconds.toFixed(3)]),
  ];
  printTable(table);
  const bytes = rows[0]?.bytes;
  if (bytes !== undefined) {
    console.log(
      `\n${formatBytes(bytes)} per row, 64 KiB blocks; seconds: the ` +
        `receiver's, sender connected (pipe, socket: first byte) to last byte`,
    );
  }
  for (const line of targetLines(rows)) console.log(line);
}
