// Hand-made qubes.Filecopy streams (spec §2), for playing a hostile or broken sender or receiver
// against our real programs.

export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const LEGAL_EOF_STATUS = 31415926 & 0xff;

export interface EntryTimes {
  atime?: number;
  atimeNsec?: number;
  mtime?: number;
  mtimeNsec?: number;
}

const encoder = new TextEncoder();

export function header(
  namelen: number,
  mode: number,
  filelen: number | bigint,
  times: EntryTimes = {},
): Uint8Array {
  const bytes = new Uint8Array(32);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, namelen, true);
  view.setUint32(4, mode, true);
  view.setBigUint64(8, BigInt(filelen), true);
  view.setUint32(16, times.atime ?? 1_700_000_000, true);
  view.setUint32(20, times.atimeNsec ?? 0, true);
  view.setUint32(24, times.mtime ?? 1_700_000_000, true);
  view.setUint32(28, times.mtimeNsec ?? 0, true);
  return bytes;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function nameBytes(name: string | Uint8Array): Uint8Array {
  return concat(typeof name === "string" ? encoder.encode(name) : name, new Uint8Array([0]));
}

export function fileEntry(
  name: string | Uint8Array,
  content: string | Uint8Array,
  mode = 0o644,
  times: EntryTimes = {},
): Uint8Array {
  const data = typeof content === "string" ? encoder.encode(content) : content;
  const encodedName = nameBytes(name);
  return concat(header(encodedName.length, S_IFREG | mode, data.length, times), encodedName, data);
}

export function dirEntry(
  name: string | Uint8Array,
  mode = 0o755,
  times: EntryTimes = {},
): Uint8Array {
  const encodedName = nameBytes(name);
  return concat(header(encodedName.length, S_IFDIR | mode, 0, times), encodedName);
}

export function linkEntry(name: string | Uint8Array, target: string): Uint8Array {
  const encodedName = nameBytes(name);
  const data = encoder.encode(target);
  return concat(header(encodedName.length, S_IFLNK | 0o777, data.length), encodedName, data);
}

export const END = new Uint8Array(32);

export interface ParsedResult {
  code: number;
  crc: number;
  lastName: string | null;
  bytes: number;
}

/** The receiver's 16-byte result and its optional last-name extension (§2.4). */
export function parseResult(bytes: Uint8Array): ParsedResult {
  if (bytes.length < 16) throw new Error(`result has ${bytes.length} bytes, expected at least 16`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const code = view.getUint32(0, true);
  if (view.getUint32(4, true) !== 0) throw new Error("result padding is not zero");
  const crc = Number(view.getBigUint64(8, true));
  let lastName: string | null = null;
  if (bytes.length >= 20) {
    const length = view.getUint32(16, true);
    lastName = new TextDecoder().decode(bytes.subarray(20, 20 + length));
  }
  return { code, crc, lastName, bytes: bytes.length };
}

export function crcOf(stream: Uint8Array): number {
  return Bun.hash.crc32(stream);
}
