// qfile-unpacker [--allow-all-names|--no-allow-all-names] [-v|--verbose] [UID [DIR]] (spec §3.1):
// the receiving side of qubes.Filecopy, run by the service with the stream on stdin and the
// result going back on stdout. Files land in DIR, by default ~/QubesIncoming/<source domain>.
//
// Upstream is setuid root and chroots into the incoming directory; here the service already runs
// as the receiving user, so UID may only name that user. Containment rests on what the Zig
// receiver does for every entry: strict name checks, every path component opened with
// O_NOFOLLOW below the incoming directory's fd, files invisible until complete (O_TMPFILE).
import { closeSync, constants, mkdirSync, openSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { receiverStatus } from "../filecopy/messages.ts";
import { unpackStream } from "../native.ts";

const PROGRAM = "qfile-unpacker";
const USAGE = `usage: ${PROGRAM} [--allow-all-names|--no-allow-all-names] [-v|--verbose] [UID [DIR]]`;

const HELP = `the receiving side of qubes.Filecopy: unpacks the stream on stdin into DIR
(default ~/QubesIncoming/$QREXEC_REMOTE_DOMAIN) and answers on stdout

Options:
  --allow-all-names     accept any file name that is safe for the file system
  --no-allow-all-names  accept only names safe for display (the default)
  -v, --verbose         print each received name on stderr
  -h, --help            display this help
`;

function die(message: string): never {
  process.stderr.write(`${PROGRAM}: ${message}\n`);
  process.exit(1);
}

let allowAllNames = false;
let verbose = false;
const positional: string[] = [];
for (const arg of process.argv.slice(2)) {
  if (arg === "-h" || arg === "--help") {
    process.stdout.write(`${USAGE.replace("usage:", "Usage:")}\n\n${HELP}`);
    process.exit(0);
  } else if (arg === "--allow-all-names") allowAllNames = true;
  else if (arg === "--no-allow-all-names") allowAllNames = false;
  else if (arg === "-v" || arg === "--verbose") verbose = true;
  else if (arg === "--allow-unsafe-symlinks" || arg === "--no-allow-unsafe-symlinks") die(`${arg} is not supported (qubes.Filecopy never uses it)`);
  else if (arg === "-w" || arg.startsWith("--wait-for-space")) die(`${arg} is not supported (qubes.Filecopy never uses it)`);
  else if (arg.startsWith("-")) die(`unknown option ${arg}\n${USAGE}`);
  else positional.push(arg);
}
if (positional.length > 2) die(`too many arguments\n${USAGE}`);
const [uid, dirArgument] = positional;
if (uid !== undefined) {
  const own = process.getuid?.() ?? 0;
  if (!/^\d+$/.test(uid)) die(`UID must be a number, not '${uid}'`);
  // Upstream's rule since CA 25ce49cd: only root may name another user; we never switch users.
  if (Number(uid) !== own) die(`UID ${uid} is not the user this runs as (${own}); the receiver never changes users`);
}

let dir: string;
if (dirArgument !== undefined) {
  dir = dirArgument;
} else {
  const source = process.env.QREXEC_REMOTE_DOMAIN;
  if (!source) die("QREXEC_REMOTE_DOMAIN is not set: run as the qubes.Filecopy service, or give UID and DIR");
  if (source.includes("/") || source === "." || source === "..") die(`'${source}' is not a domain name`);
  const incoming = join(process.env.HOME || homedir(), "QubesIncoming");
  mkdirSync(incoming, { recursive: true, mode: 0o700 });
  dir = join(incoming, source);
}
try {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
} catch (error) {
  die(`cannot create ${dir}: ${error instanceof Error ? error.message : String(error)}`);
}
let dirFd: number;
try {
  dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
} catch (error) {
  die(`cannot open ${dir}: ${error instanceof Error ? error.message : String(error)}`);
}

const { code, fatal } = unpackStream({ inFd: 0, outFd: 1, dirFd, allowAllNames, verbose });
closeSync(dirFd);
if (code < 0) die(fatal ?? "stopped without a result");
process.exit(receiverStatus(code));
