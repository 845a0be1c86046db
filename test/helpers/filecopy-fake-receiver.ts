// A hostile qubes.Filecopy receiver, run as a process: reads the stream on stdin entry by entry
// up to the end marker (spec §2.2), then answers on stdout with a result whose fields it
// chooses: `bun filecopy-fake-receiver.ts CODE CRC_HIGH_BITS`, where the CRC field's low 32 bits
// are the true CRC of what it read and its high 32 bits are CRC_HIGH_BITS.
import { readSync, writeSync } from "node:fs";

const code = Number(process.argv[2] ?? "0");
const high = Number(process.argv[3] ?? "0");

let buffer = new Uint8Array(0);
let crc = 0;

function take(count: number): Uint8Array | null {
  while (buffer.length < count) {
    const chunk = new Uint8Array(1 << 16);
    const got = readSync(0, chunk, 0, chunk.length, null);
    if (got === 0) return null;
    const grown = new Uint8Array(buffer.length + got);
    grown.set(buffer);
    grown.set(chunk.subarray(0, got), buffer.length);
    buffer = grown;
  }
  const out = buffer.slice(0, count);
  buffer = buffer.slice(count);
  crc = Bun.hash.crc32(out, crc);
  return out;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
while (true) {
  const header = take(32);
  if (header === null) process.exit(2);
  const view = new DataView(header.buffer);
  const namelen = view.getUint32(0, true);
  if (namelen === 0) break;
  const mode = view.getUint32(4, true);
  const filelen = Number(view.getBigUint64(8, true));
  if (take(namelen) === null) process.exit(2);
  if ((mode & S_IFMT) !== S_IFDIR && filelen > 0 && take(filelen) === null) process.exit(2);
}

const reply = new Uint8Array(16);
const view = new DataView(reply.buffer);
view.setUint32(0, code >>> 0, true);
view.setUint32(8, crc >>> 0, true);
view.setUint32(12, high >>> 0, true);
writeSync(1, reply);
