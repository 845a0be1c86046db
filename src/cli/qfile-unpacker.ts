// qfile-unpacker [--allow-all-names|--no-allow-all-names] [-v|--verbose]
//     [-w MARGIN|--wait-for-space MARGIN] [UID [DIR]]   (or the legacy UID DIR [-v] [-w [MARGIN]])
// (spec §3.1): the receiving side of qubes.Filecopy, run by the service with the stream on stdin
// and the result going back on stdout. Files land in DIR, by default
// ~/QubesIncoming/<source domain>; a DIR given on the command line must exist (as upstream, which
// chdirs into it).
//
// Upstream is setuid root and chroots into the incoming directory; here the service already runs
// as the receiving user, so UID may only name that user. Containment rests on what the Zig
// receiver does for every entry: strict name checks, every path component opened with
// O_NOFOLLOW below the incoming directory's fd (afresh for each entry), files invisible until
// complete (O_TMPFILE), and permission checks as the user even when that user is root.
import { closeSync, constants, mkdirSync, openSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { errnoOf, receiverStatus, strerror } from "../filecopy/messages.ts";
import { parseUnpackerArgs, UNPACKER_USAGE } from "../filecopy/unpacker-args.ts";
import { unpackStream } from "../native.ts";

const PROGRAM = "qfile-unpacker";

const HELP = `the receiving side of qubes.Filecopy: unpacks the stream on stdin into DIR
(default ~/QubesIncoming/$QREXEC_REMOTE_DOMAIN) and answers on stdout

Options:
  --allow-all-names     accept any file name that is safe for the file system
  --no-allow-all-names  accept only names safe for display (the default)
  -v, --verbose         print each received name on stderr
  -w, --wait-for-space MARGIN
                        wait until MARGIN bytes beyond each file are free before writing it
  -h, --help            display this help
`;

function die(message: string): never {
  process.stderr.write(`${PROGRAM}: ${message}\n`);
  process.exit(1);
}

/** gui-fatal.c's format (spec §4.3). */
function fatal(message: string, errno: number): never {
  die(`Fatal error: ${message} (error type: ${strerror(errno)})`);
}

const argv = process.argv.slice(2);
if (argv[0] === "-h" || argv[0] === "--help") {
  process.stdout.write(`${UNPACKER_USAGE.replace("usage:", "Usage:")}\n\n${HELP}`);
  process.exit(0);
}
const parsed = parseUnpackerArgs(argv);
if ("error" in parsed) die(`${parsed.error}\n${UNPACKER_USAGE}`);
const { uid, dir: dirArgument, allowAllNames, verbose, waitForSpace } = parsed;
if (uid !== undefined) {
  const own = process.getuid?.() ?? 0;
  // Upstream's rule since CA 25ce49cd: only root may name another user; we never switch users.
  if (uid !== own) die(`UID ${uid} is not the user this runs as (${own}); it never changes users`);
}

function defaultDir(): string {
  const source = process.env.QREXEC_REMOTE_DOMAIN;
  if (!source) die("Fatal error: Cannot get remote domain name");
  const bad = source.includes("/") || source === "." || source === "..";
  if (bad) die(`'${source}' is not a domain name`);
  const incoming = join(process.env.HOME || homedir(), "QubesIncoming");
  // As upstream: both made 0700 if missing, errors left to the open below.
  for (const path of [incoming, join(incoming, source)]) {
    try {
      mkdirSync(path, { mode: 0o700 });
    } catch {
      // Already there, or cannot be made: the open below reports what matters.
    }
  }
  return join(incoming, source);
}

const dir = dirArgument ?? defaultDir();
let dirFd: number;
try {
  dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
} catch (error) {
  fatal(`Error chdir to ${dir}`, errnoOf(error));
}

const options = { inFd: 0, outFd: 1, dirFd, allowAllNames, verbose, waitForSpace };
const { code, fatal: stopped } = unpackStream(options);
closeSync(dirFd);
if (code < 0) die(stopped ?? "stopped without a result");
process.exit(receiverStatus(code));
