// One end of a two-process vchan exchange, for tests, `qrx bench vchan` and the vchan demo.
// Usage: bun src/tools/vchan-peer.ts '<json PeerTask>'. Progress and the result are JSON lines on
// stdout: {"event":"listening"} (server created), {"event":"progress"} (first MiB moved),
// {"event":"done",...} or {"event":"error",...}.
import { writeSync } from "node:fs";
import { readdirSync, readlinkSync, readFileSync } from "node:fs";
import { NativeError, Vchan, VchanState, configure } from "../native.ts";

export interface PeerTask {
  role: "server" | "client";
  /**
   * "send"/"recv": stream `bytes` one way; "echo-many"/"call-many": `count` vchans at once;
   * "poke": connect, send 100 bytes, then scribble `poke` on the shared page like a hostile peer.
   */
  mode: "send" | "recv" | "echo-many" | "call-many" | "poke";
  poke?: { offset: number; value: number };
  dir: string;
  localDomain: number;
  remoteDomain: number;
  port: number;
  ringBytes: number;
  bytes?: number;
  /** Hash every byte (tests) or only move them (benchmarks). */
  verify?: boolean;
  count?: number;
  timeoutMs?: number;
  spinNs?: number;
}

export interface PeerResult {
  event: "done";
  bytes: number;
  /** Chained xxHash64 over 64 KiB blocks of the stream, as a decimal string ("" unverified). */
  hash: string;
  seconds: number;
  cpuSeconds: number;
  readRingBytes: number;
  writeRingBytes: number;
  kicks: number;
  sleeps: number;
  spinHits: number;
  leftoverFds: number;
  leftoverMaps: number;
}

export const BLOCK_BYTES = 64 * 1024;

function emit(record: object): void {
  writeSync(1, JSON.stringify(record) + "\n");
}

/** The sender's stream: block i is a window of a random pool, stamped with i. */
export class Pattern {
  readonly #pool = new Uint8Array(1 << 20);
  readonly #block = new Uint8Array(BLOCK_BYTES);
  readonly #view = new DataView(this.#block.buffer);
  constructor(seed: number) {
    let x = seed >>> 0 || 1;
    const words = new Uint32Array(this.#pool.buffer);
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
  }
  block(index: number): Uint8Array {
    const offset = ((index * 4099) % 255) * 4096;
    this.#block.set(this.#pool.subarray(offset, offset + BLOCK_BYTES));
    this.#view.setUint32(0, index, true);
    return this.#block;
  }
}

export function chain(hash: bigint, block: Uint8Array): bigint {
  return BigInt(Bun.hash.xxHash64(block, hash));
}

function send(vchan: Vchan, total: number, verify: boolean): string {
  const pattern = new Pattern(0x5eed);
  const fixed = pattern.block(0);
  let hash = 0n;
  let sent = 0;
  let reported = false;
  for (let index = 0; sent < total; index++) {
    const length = Math.min(BLOCK_BYTES, total - sent);
    const block = (verify ? pattern.block(index) : fixed).subarray(0, length);
    if (verify) hash = chain(hash, block);
    vchan.write(block);
    sent += length;
    if (!reported && sent >= 1 << 20) {
      emit({ event: "progress", bytes: sent });
      reported = true;
    }
  }
  return verify ? hash.toString() : "";
}

function receive(vchan: Vchan, total: number, verify: boolean): string {
  const block = new Uint8Array(BLOCK_BYTES);
  let hash = 0n;
  let received = 0;
  let filled = 0;
  let reported = false;
  while (received < total) {
    const want = Math.min(BLOCK_BYTES - filled, total - received);
    const count = vchan.read(block.subarray(filled, filled + want));
    filled += count;
    received += count;
    if (filled === BLOCK_BYTES || received === total) {
      if (verify) hash = chain(hash, block.subarray(0, filled));
      filled = 0;
    }
    if (!reported && received >= 1 << 20) {
      emit({ event: "progress", bytes: received });
      reported = true;
    }
  }
  return verify ? hash.toString() : "";
}

/** Counts what this process still holds of any vchan: memfd fds and shared mappings. */
function leftovers(): { fds: number; maps: number } {
  let fds = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).includes("qrx-vchan")) fds++;
    } catch {
      // The fd readdir itself used is gone by now.
    }
  }
  const maps = readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((line) => line.includes("qrx-vchan")).length;
  return { fds, maps };
}

function open(task: PeerTask, port: number): Vchan {
  const endpoint = {
    dir: task.dir,
    localDomain: task.localDomain,
    remoteDomain: task.remoteDomain,
    port,
  };
  if (task.role === "server") {
    return Vchan.server({ ...endpoint, readMin: task.ringBytes, writeMin: task.ringBytes });
  }
  return Vchan.client({ ...endpoint, timeoutMs: task.timeoutMs ?? 10_000 });
}

function streamOne(task: PeerTask): void {
  const vchan = open(task, task.port);
  if (task.role === "server") {
    emit({ event: "listening" });
    vchan.connectWait(task.timeoutMs ?? 10_000);
  }
  const bytes = task.bytes ?? 0;
  const started = performance.now();
  const cpuStart = process.cpuUsage();
  let hash = "";
  try {
    hash =
      task.mode === "send"
        ? send(vchan, bytes, task.verify ?? true)
        : receive(vchan, bytes, task.verify ?? true);
  } catch (error) {
    const state = vchan.isOpen();
    const reason = vchan.reason();
    vchan.close();
    const left = leftovers();
    throw Object.assign(error as Error, {
      state,
      reason,
      leftoverFds: left.fds,
      leftoverMaps: left.maps,
    });
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  const info = vchan.info();
  // A sender must not close before the receiver has drained the ring: close only tells the
  // peer we left, and its leftover data stays readable, so this is safe either way.
  vchan.close();
  const left = leftovers();
  const result: PeerResult = {
    event: "done",
    bytes,
    hash,
    seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    readRingBytes: info.readRingBytes,
    writeRingBytes: info.writeRingBytes,
    kicks: info.kicks,
    sleeps: info.sleeps,
    spinHits: info.spinHits,
    leftoverFds: left.fds,
    leftoverMaps: left.maps,
  };
  emit(result);
}

/** Many vchans open at once: the server side echoes an 8-byte message on each. */
function many(task: PeerTask): void {
  const count = task.count ?? 50;
  const vchans: Vchan[] = [];
  for (let i = 0; i < count; i++) {
    vchans.push(open(task, task.port + i));
    if (task.role === "server" && i === count - 1) emit({ event: "listening" });
  }
  let open_ = 0;
  for (const [i, vchan] of vchans.entries()) {
    if (task.role === "server") vchan.connectWait(task.timeoutMs ?? 10_000);
    if (vchan.isOpen() === VchanState.Connected) open_++;
    const message = new Uint8Array(8);
    if (task.role === "client") {
      new DataView(message.buffer).setBigUint64(0, BigInt(task.port + i) * 1_000_003n, true);
      vchan.send(message);
    }
  }
  // Every vchan is connected before any reply is read: all `count` are open at the same time.
  let verified = 0;
  for (const [i, vchan] of vchans.entries()) {
    const message = new Uint8Array(8);
    if (task.role === "server") {
      vchan.recv(message);
      vchan.send(message);
      verified++;
    } else {
      vchan.recv(message);
      if (new DataView(message.buffer).getBigUint64(0, true) === BigInt(task.port + i) * 1_000_003n)
        verified++;
    }
  }
  for (const vchan of vchans) vchan.close();
  const left = leftovers();
  emit({ event: "done", open: open_, verified, leftoverFds: left.fds, leftoverMaps: left.maps });
}

/** A hostile peer: corrupts the shared page, then waits to be disconnected. */
function poke(task: PeerTask): void {
  const vchan = open(task, task.port);
  vchan.write(new Uint8Array(100).fill(7));
  vchan.debugPoke(task.poke!.offset, task.poke!.value);
  emit({ event: "poked" });
  // The victim disconnects us; a blocking read then fails, which ends this process.
  const buffer = new Uint8Array(16);
  for (;;) vchan.read(buffer);
}

export function main(): void {
  const task = JSON.parse(process.argv[2] ?? "{}") as PeerTask;
  if (task.spinNs !== undefined) configure({ spinNs: task.spinNs });
  try {
    if (task.mode === "echo-many" || task.mode === "call-many") many(task);
    else if (task.mode === "poke") poke(task);
    else streamOne(task);
  } catch (error) {
    const e = error as NativeError & {
      state?: number;
      reason?: string;
      leftoverFds?: number;
      leftoverMaps?: number;
    };
    emit({
      event: "error",
      code: e.code ?? "EUNKNOWN",
      message: e.message,
      state: e.state,
      reason: e.reason,
      leftoverFds: e.leftoverFds,
      leftoverMaps: e.leftoverMaps,
    });
    process.exit(1);
  }
}

if (import.meta.main) main();
