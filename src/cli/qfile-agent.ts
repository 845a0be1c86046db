// qfile-agent [--ignore-symlinks] [--] PATH... (spec §4.1): the sending side of qubes.Filecopy,
// run by qrexec-client-vm as its local program: the stream goes out on stdout, the receiver's
// one result comes back on stdin. The walk, the reads and the CRC run in Zig (src/native.ts).
//
// Progress (§4.2): PROGRESS_TYPE=console with FILECOPY_TOTAL_BYTES draws ours on stderr;
// PROGRESS_TYPE=gui writes the byte count as a decimal line to SAVED_FD_1; otherwise silent.
//
// Bun takes the first `--` after the script for itself: bin/qfile-agent passes one of its own,
// so a user's `--` (and a file named `-name` after it) arrives here intact.
import { writeSync } from "node:fs";
import { fatalMessage, remoteErrorMessage } from "../filecopy/messages.ts";
import { Progress } from "../filecopy/progress.ts";
import { packStream } from "../native.ts";
import { isTerminal } from "./output.ts";

const PROGRAM = "qfile-agent";
const USAGE = `usage: ${PROGRAM} [--ignore-symlinks] [--] PATH...`;
const GUI_INTERVAL_MS = 100;

const HELP = `the sending side of qubes.Filecopy, run by qrexec-client-vm as its local program:
the stream goes out on stdout, the receiver's one result comes back on stdin

Options:
  --ignore-symlinks  skip symbolic links instead of sending them
  -h, --help         display this help

Environment:
  PROGRESS_TYPE          console (with FILECOPY_TOTAL_BYTES), gui (byte counts on SAVED_FD_1)
                         or none
`;
let progress: Progress | null = null;

function usageError(problem: string): never {
  process.stderr.write(`${PROGRAM}: ${problem}\n${USAGE}\n`);
  process.exit(1);
}

function fatal(message: string, errno: number): never {
  progress?.clear();
  process.stderr.write(`${PROGRAM}: ${fatalMessage(message, errno)}\n`);
  process.exit(1);
}

function printHelp(): never {
  process.stdout.write(`${USAGE.replace("usage:", "Usage:")}\n\n${HELP}`);
  process.exit(0);
}

function parseArgs(args: string[]): { paths: string[]; ignoreSymlinks: boolean } {
  let ignoreSymlinks = false;
  let index = 0;
  for (; index < args.length; index++) {
    const arg = args[index]!;
    if (arg === "--") {
      index++;
      break;
    }
    if (arg === "--ignore-symlinks") ignoreSymlinks = true;
    else if (arg === "-h" || arg === "--help") printHelp();
    else if (arg.startsWith("-") && arg !== "-") usageError(`unknown option ${arg}`);
    else break;
  }
  const paths = args.slice(index);
  if (paths.length === 0) usageError("no file to send");
  if (paths.includes("")) usageError("an empty file name was given");
  if (paths.some((path) => path.includes("\0"))) usageError("a file name contains a NUL byte");
  return { paths, ignoreSymlinks };
}

function guiFdOf(env: NodeJS.ProcessEnv): number | null {
  const fd = env.SAVED_FD_1;
  return env.PROGRESS_TYPE === "gui" && fd && /^\d+$/.test(fd) ? Number(fd) : null;
}

const { paths, ignoreSymlinks } = parseArgs(process.argv.slice(2));
if (process.env.PROGRESS_TYPE === "console") {
  const totalText = process.env.FILECOPY_TOTAL_BYTES;
  const total = totalText !== undefined && /^\d+$/.test(totalText) ? Number(totalText) : null;
  const write = (text: string) => process.stderr.write(text);
  progress = new Progress({ total, terminal: isTerminal(2), write });
}
const guiFd = guiFdOf(process.env);
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
      } catch {
        // The progress reader went away: the copy itself succeeded.
      }
    }
    process.exit(0);
  case "remote":
    fatal(remoteErrorMessage(result.code, result.lastName), result.code);
  case "crc":
    // errno is still the remote code (0) when upstream reports this.
    fatal("File transfer failed: checksum mismatch", 0);
  case "eof":
    fatal("the receiving side closed without a result (EOF instead of result)", result.code);
  case "local":
    fatal(result.message || "local error", result.code);
}
