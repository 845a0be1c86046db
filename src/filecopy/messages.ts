// What the sender says about a receiver's error code (spec §2.6), and the fatal-error format of
// upstream's tools (§4.3): `<program>: Fatal error: <message> (error type: <strerror>)`. The
// receiver's "last file" comes from the other domain: it arrives sanitized (only printable ASCII,
// no quotes), so it cannot be mistaken for our own words.

import { constants as osConstants } from "node:os";

const STRERROR: Record<number, string> = {
  1: "Operation not permitted",
  2: "No such file or directory",
  5: "Input/output error",
  9: "Bad file descriptor",
  12: "Cannot allocate memory",
  13: "Permission denied",
  17: "File exists",
  18: "Invalid cross-device link",
  20: "Not a directory",
  21: "Is a directory",
  22: "Invalid argument",
  24: "Too many open files",
  27: "File too large",
  28: "No space left on device",
  30: "Read-only file system",
  32: "Broken pipe",
  36: "File name too long",
  39: "Directory not empty",
  40: "Too many levels of symbolic links",
  67: "Link has been severed",
  71: "Protocol error",
  74: "Bad message",
  84: "Invalid or incomplete multibyte or wide character",
  95: "Operation not supported",
  121: "Remote I/O error",
  122: "Disk quota exceeded",
};

/** glibc's strerror for Linux errno values (`code` read as a C int, as upstream passes it). */
export function strerror(code: number): string {
  if (code === 0) return "Success";
  const signed = code | 0;
  return STRERROR[signed] ?? `Unknown error ${signed}`;
}

/** The errno of a node:fs error (EIO when it has none). */
export function errnoOf(error: unknown): number {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const errno = code ? (osConstants.errno as Record<string, number>)[code] : undefined;
  return errno ?? 5;
}

/** gui-fatal.c's format (spec §4.3), without the program name. */
export function fatalMessage(message: string, errno: number): string {
  return `Fatal error: ${message} (error type: ${strerror(errno)})`;
}

const NOT_OVERWRITING = "not overwriting existing file. Clean QubesIncoming dir, and retry copy";

/**
 * What upstream's sender says about a receiver's error code (pack.c wait_for_result, spec §2.6);
 * `lastName` is what the receiver last saw, already sanitized. gui-fatal appends the code's
 * strerror, as errno is the remote code there.
 */
export function remoteErrorMessage(code: number, lastName: string | null): string {
  const last = lastName ? `; Last file: ${lastName}` : "";
  switch (code) {
    case 17:
      return `File copy: ${NOT_OVERWRITING}${last}`;
    case 22:
      return `File copy: Corrupted data from packer${last}`;
    default:
      return `File copy: "${strerror(code)}${last}"`;
  }
}

/** The exit status a receiver's code becomes (its errno, truncated to 8 bits as by the kernel). */
export function receiverStatus(code: number): number {
  return code & 0xff;
}
