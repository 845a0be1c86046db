// The kernel baselines of `qrx bench vchan`: a pipe and a unix socketpair between two Bun
// processes.
// The parent creates the channel (openChannel) and hands one end to each child as fd 3; the
// children
// run this file: `bun bench/baseline-peer.ts write|read <bytes>`. They move 64 KiB blocks with
// synchronous readSync/writeSync, the same block size and call pattern as the shm peers' FFI calls.
// The reader prints one JSON line on stdout: {"event":"done","bytes":N,"seconds":S}.
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, readSync, writeSync } from "node:fs";

export const BLOCK_BYTES = 64 * 1024;
/** Where each child finds its end of the channel (0-2 stay stdio, so Bun leaves it alone). */
export const CHANNEL_FD = 3;

export type ChannelKind = "pipe" | "socketpair";

export interface Channel {
  /** The end the writer gets. */
  writeFd: number;
  /** The end the reader gets. */
  readFd: number;
  /** Kernel buffering between the two: the pipe's capacity or the socket's send buffer. */
  bufferBytes: number;
}

// Bun has no pipe() or socketpair(), and its streams are async; raw fds from libc let both
// children use plain blocking reads and writes, like the shm peers.
function libc() {
  const { i32, ptr } = FFIType;
  return dlopen("libc.so.6", {
    pipe2: { args: [ptr, i32], returns: i32 },
    socketpair: { args: [i32, i32, i32, ptr], returns: i32 },
    fcntl: { args: [i32, i32], returns: i32 },
    getsockopt: { args: [i32, i32, i32, ptr, ptr], returns: i32 },
  }).symbols;
}

const O_CLOEXEC = 0o2000000;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const F_GETPIPE_SZ = 1032;

/** A fresh channel whose fds are close-on-exec: only the child it is handed to inherits it. */
export function openChannel(kind: ChannelKind): Channel {
  const c = libc();
  const fds = new Int32Array(2);
  if (kind === "pipe") {
    if (c.pipe2(fds, O_CLOEXEC) !== 0) throw new Error("pipe2 failed");
    const bufferBytes = c.fcntl(fds[1]!, F_GETPIPE_SZ);
    return { readFd: fds[0]!, writeFd: fds[1]!, bufferBytes };
  }
  if (c.socketpair(AF_UNIX, SOCK_STREAM | O_CLOEXEC, 0, fds) !== 0)
    throw new Error("socketpair failed");
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  if (c.getsockopt(fds[0]!, SOL_SOCKET, SO_SNDBUF, value, length) !== 0)
    throw new Error("getsockopt failed");
  return { writeFd: fds[0]!, readFd: fds[1]!, bufferBytes: value[0]! };
}

function write(fd: number, total: number): void {
  const block = new Uint8Array(BLOCK_BYTES).fill(0x5a);
  for (let sent = 0; sent < total;) {
    const length = Math.min(BLOCK_BYTES, total - sent);
    sent += writeSync(fd, block, 0, length);
  }
  closeSync(fd);
}

/**
 * Times from the first byte, i.e. once the writer is running (its process start-up is not the
 * channel's cost): the shm receiver's clock likewise starts when the sender connects, right
 * before its first write. Only that one byte is read before the clock starts.
 */
function read(fd: number, total: number): { bytes: number; seconds: number } {
  const block = new Uint8Array(BLOCK_BYTES);
  let received = readSync(fd, block, 0, 1, null);
  const started = performance.now();
  while (received < total) {
    const count = readSync(fd, block, 0, Math.min(BLOCK_BYTES, total - received), null);
    if (count === 0) break;
    received += count;
  }
  const seconds = (performance.now() - started) / 1000;
  // Anything after `total` would mean the count check below is meaningless, so look for EOF.
  if (received === total && readSync(fd, block, 0, 1, null) !== 0) received++;
  return { bytes: received, seconds };
}

export function main(): void {
  const [role, bytesText] = process.argv.slice(2);
  const total = Number(bytesText);
  if (!Number.isSafeInteger(total) || total <= 0 || (role !== "write" && role !== "read")) {
    throw new Error("usage: baseline-peer.ts write|read <bytes> (channel on fd 3)");
  }
  if (role === "write") {
    write(CHANNEL_FD, total);
    return;
  }
  const result = read(CHANNEL_FD, total);
  writeSync(1, JSON.stringify({ event: "done", ...result }) + "\n");
}

if (import.meta.main) main();
