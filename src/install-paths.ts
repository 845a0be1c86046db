// Where qrx's own files are. Two shapes: a checkout (bin/ launchers, zig-out/, src/lab/ data),
// and the single executable of `npm run dist` (dist/qrx, the program names as symlinks to it,
// libqrx.so and share/qrx/ beside it). Every place that starts one of our programs or reads
// our data files asks here, so both shapes run the same code.
import { dirname, join } from "./posix-path.ts";

/** Bun serves a compiled executable's modules from this virtual directory. */
export const COMPILED = import.meta.dir.startsWith("/$bunfs/");

const ROOT = join(import.meta.dir, "..");
const EXE_DIR = dirname(process.execPath);

/** The tree a lab domain sees read-only: the checkout, or the executable's directory. */
export const PROJECT_DIR = COMPILED ? EXE_DIR : ROOT;
/** Helpers that are no user's command (the isolation's namespace builder). */
export const LIBEXEC_DIR = join(PROJECT_DIR, "libexec");
/** The user-facing programs (qrx, qrexec-*, qvm-*): bin/ launchers, or the dist symlinks. */
export const BIN_DIR = COMPILED ? EXE_DIR : join(ROOT, "bin");
/** Native programs (the qrexec-client-vm front end), ahead of BIN_DIR on a domain's PATH. */
export const NATIVE_BIN_DIR = COMPILED ? EXE_DIR : join(ROOT, "zig-out", "bin");
/** The lab's data files (default-lab.toml, the built-in services). */
export const LAB_DATA_DIR = COMPILED
  ? join(EXE_DIR, "share", "qrx", "lab")
  : join(ROOT, "src", "lab");

export function defaultNativeLibraryPath(): string {
  return COMPILED ? join(EXE_DIR, "libqrx.so") : join(ROOT, "zig-out", "lib", "libqrx.so");
}

/**
 * Internal entry points that are started as processes of their own (not on PATH). In a checkout
 * each is a .ts file run by Bun; in the executable, the executable itself with this name as
 * argv[0] (src/cli/main.ts dispatches on it).
 */
export const INTERNAL_ENTRIES = {
  "qrx-admin": "src/cli/qrx-admin.ts",
  "qrx-vchan-peer": "src/tools/vchan-peer.ts",
  "qrx-baseline-peer": "src/bench/baseline-peer.ts",
  "qrexec-daemon": "src/cli/qrexec-daemon.ts",
  "qrx-noop": "src/cli/noop.ts",
} as const;

export type InternalEntry = keyof typeof INTERNAL_ENTRIES;

/** `cmd` and `argv0` for Bun.spawn to run `entry` with `args`. */
export function entryCommand(
  entry: InternalEntry,
  args: string[],
): { cmd: string[]; argv0?: string } {
  if (COMPILED) return { cmd: [process.execPath, ...args], argv0: entry };
  return { cmd: [process.execPath, join(ROOT, INTERNAL_ENTRIES[entry]), ...args] };
}
