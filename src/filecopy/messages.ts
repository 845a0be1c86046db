// What the sender says about a receiver's error code (spec §2.6), and the fatal-error format of
// upstream's tools (§4.3): `<program>: Fatal error: <message> (error type: <strerror>)`. The
// receiver's "last file" comes from the other domain: it arrives sanitized (only printable ASCII,
// no quotes), and is quoted here so it can never be mistaken for our own words.

import { LEGAL_EOF } from "../native.ts";

const STRERROR: Record<number, string> = {
  1: "Operation not permitted",
  2: "No such file or directory",
  5: "Input/output error",
  12: "Cannot allocate memory",
  13: "Permission denied",
  17: "File exists",
  18: "Invalid cross-device link",
  20: "Not a directory",
  21: "Is a directory",
  22: "Invalid argument",
  27: "File too large",
  28: "No space left on device",
  30: "Read-only file system",
  32: "Broken pipe",
  36: "File name too long",
  40: "Too many levels of symbolic links",
  67: "Link has been severed",
  74: "Bad message",
  84: "Invalid or incomplete multibyte or wide character",
  121: "Remote I/O error",
  122: "Disk quota exceeded",
};

export function strerror(code: number): string {
  if (code === LEGAL_EOF) return "the sending side stopped in the middle of an entry";
  return STRERROR[code] ?? `Unknown error ${code}`;
}

/** The sender's sentence for a receiver's error code; `lastName` is what the receiver last saw. */
export function remoteErrorMessage(code: number, lastName: string | null): string {
  const last = lastName === null ? "" : `"${lastName}"`;
  switch (code) {
    case 17:
      return `a file named ${last || "like one being copied"} already exists in the target's QubesIncoming directory; nothing was overwritten`;
    case 22:
      return `corrupted data from the sender${last ? ` (last file: ${last})` : ""}`;
    case 84:
      return `forbidden character in a file name or link target${last ? `: ${last}` : ""} (qvm-copy chooses qubes.Filecopy+allow-all-names for such names)`;
    case 67:
      return `cannot verify that the link would not be broken by the copy${last ? `: ${last}` : ""}`;
    default:
      return `File copy: "${strerror(code)}${last ? `; Last file: ${last}` : ""}"`;
  }
}

/** The exit status a receiver's code becomes (its errno, truncated to 8 bits as by the kernel). */
export function receiverStatus(code: number): number {
  return code & 0xff;
}
