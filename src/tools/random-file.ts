// Test data that nothing along the way could compress or shortcut: one random 1 MiB block,
// repeated, written with large writes (the demo's and `qrx bench copy`'s big file).
import { closeSync, openSync, writeSync } from "node:fs";

export function writeRandomFile(path: string, bytes: number): void {
  const block = new Uint8Array(1 << 20);
  crypto.getRandomValues(block.subarray(0, 65536));
  for (let offset = 65536; offset < block.length; offset += 65536)
    block.copyWithin(offset, 0, 65536);
  writeRepeated(path, block, bytes);
}

/** A file of `bytes` bytes: `block` again and again, in writes of a block each. */
export function writeRepeated(path: string, block: Uint8Array, bytes: number): void {
  const fd = openSync(path, "w");
  try {
    for (let done = 0; done < bytes;)
      done += writeSync(fd, block, 0, Math.min(block.length, bytes - done));
  } finally {
    closeSync(fd);
  }
}
