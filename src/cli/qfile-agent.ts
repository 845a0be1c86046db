// qfile-agent [--ignore-symlinks] [--] PATH... (spec §4.1): the sending side of qubes.Filecopy,
// run by qrexec-client-vm as its local program: the stream goes out on stdout, the receiver's
// one result comes back on stdin. The walk, the reads and the CRC run in Zig (src/native.ts).
//
// Progress (§4.2): PROGRESS_TYPE=console with FILECOPY_TOTAL_BYTES draws ours on stderr;
// PROGRESS_TYPE=gui writes the byte count as a decimal line to SAVED_FD_1; otherwise silent.
import { writeSync } from "node:fs";
import { isatty } from "node:tty";
import { remoteErrorMessage, strerror } from "../filecopy/messages.ts";
import { Progress } from "../filecopy/progress.ts";
import { packStream } from "../native.ts";

const PROGRAM = "qfile-agent";
const GUI_INTERVAL_MS = 100;

const USAGE = `Usage: ${PROGRAM} [--ignore-symlinks] [--] PATH...`;
const HELP = `the sending side of qubes.Filecopy, run by qrexec-client-vm as its local program:
the stream goes out on stdout, the receiver's one result comes back on stdin

Options:
  --ignore-symlinks  skip symbolic links instead of sending them
  -h, --help         display this help

Environment:
  PROGRESS_TYPE          console (with FILECOPY_TOTAL_BYTES), gui (byte counts on SAVED_FD_1)
                         or none
`;
// Declared before the first fatal() (argument errors) can reach it.
let progress: Progress | null = null;

function fatal(message: string): never {
  progress?.clear();
  process.stderr.write(`${PROGRAM}: Fatal error: ${message}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
let ignoreSymlinks = false;
const paths: string[] = [];
let options = true;
for (const arg of args) {
  if (options && arg === "--") options = false;
  else if (options && arg === "--ignore-symlinks") ignoreSymlinks = true;
  else if (options && (arg === "-h" || arg === "--help")) {
    process.stdout.write(`${USAGE}\n\n${HELP}`);
    process.exit(0);
  }
  else if (options && arg.startsWith("-") && arg !== "-") fatal(`unknown option ${arg} (usage: ${PROGRAM} [--ignore-symlinks] [--] PATH...)`);
  else paths.push(arg);
}
if (paths.length === 0) fatal(`nothing to send (usage: ${PROGRAM} [--ignore-symlinks] [--] PATH...)`);
if (paths.some((path) => path === "")) fatal("an empty file name was given");

const progressType = process.env.PROGRESS_TYPE ?? "none";
const totalText = process.env.FILECOPY_TOTAL_BYTES;
if (progressType === "console") {
  const total = totalText !== undefined && /^\d+$/.test(totalText) ? Number(totalText) : null;
  progress = new Progress({ total, terminal: isatty(2), write: (text) => process.stderr.write(text) });
}
let guiFd: number | null = null;
if (progressType === "gui" && process.env.SAVED_FD_1 && /^\d+$/.test(process.env.SAVED_FD_1)) guiFd = Number(process.env.SAVED_FD_1);
let lastGui = 0;

const result = packStream({
  outFd: 1,
  inFd: 0,
  paths,
  ignoreSymlinks,
  onProgress: (bytes) => {
    progress?.update(bytes);
    if (guiFd !== null && performance.now() - lastGui >= GUI_INTERVAL_MS) {
      lastGui = performance.now();
      try {
        writeSync(guiFd, `${bytes}\n`);
      } catch {
        // The GUI's reader went away: upstream's "cancelled" status.
        process.exit(32);
      }
    }
  },
});

switch (result.status) {
  case "ok":
    progress?.finish(result.bytes);
    if (guiFd !== null) {
      try {
        writeSync(guiFd, `${result.bytes}\n`);
      } catch {}
    }
    process.exit(0);
  case "remote":
    fatal(remoteErrorMessage(result.code, result.lastName));
  case "crc":
    fatal("File transfer failed: checksum mismatch");
  case "eof":
    fatal("the receiving side closed without a result (EOF instead of result)");
  case "local":
    fatal(result.message || strerror(result.code));
}
