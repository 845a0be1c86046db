// qfile-unpacker's command line (spec §3.1), both of upstream's forms:
//   modern (getopt "+vw:"): [--allow-all-names|--no-allow-all-names] [-v|--verbose]
//                           [-w MARGIN|--wait-for-space MARGIN] [UID [DIR]]
//   legacy (first argument starts with a digit, at least two): UID DIR [-v] [-w [MARGIN]]
// MARGIN is a byte count from 1 to INT_MAX; `-w` alone in the legacy form means 1.

export const UNPACKER_USAGE =
  "usage: qfile-unpacker [--allow-all-names|--no-allow-all-names] [-v|--verbose] " +
  "[-w MARGIN|--wait-for-space MARGIN] [UID [DIR]]";

export interface UnpackerArgs {
  allowAllNames: boolean;
  verbose: boolean;
  /** Free bytes to keep beyond each file before writing it (0: do not wait). */
  waitForSpace: number;
  uid?: number;
  dir?: string;
}

const INT_MAX = 2 ** 31 - 1;

function defaults(): UnpackerArgs {
  return { allowAllNames: false, verbose: false, waitForSpace: 0 };
}

function margin(text: string | undefined): number | null {
  if (text === undefined || !/^\d+$/.test(text)) return null;
  const value = Number(text);
  return value >= 1 && value <= INT_MAX ? value : null;
}

function uidOf(text: string): number | null {
  return /^\d+$/.test(text) && Number(text) <= 2 ** 32 - 1 ? Number(text) : null;
}

function legacy(args: string[]): UnpackerArgs | { error: string } {
  const uid = uidOf(args[0]!);
  if (uid === null) return { error: `invalid UID '${args[0]}'` };
  const out: UnpackerArgs = { ...defaults(), uid, dir: args[1] };
  for (let index = 2; index < args.length; index++) {
    const arg = args[index];
    if (arg === "-v") out.verbose = true;
    else if (arg === "-w") {
      const value = margin(args[index + 1]);
      out.waitForSpace = value ?? 1;
      if (value !== null) index++;
    } else return { error: `unexpected argument '${arg}'` };
  }
  return out;
}

/** `-w M`, `-wM`, `--wait-for-space M`, `--wait-for-space=M` (anything else: undefined). */
function marginText(arg: string, args: string[], index: number): string | undefined {
  if (arg === "-w" || arg === "--wait-for-space") return args[index + 1];
  if (arg.startsWith("--wait-for-space=")) return arg.slice("--wait-for-space=".length);
  return arg.startsWith("--") ? undefined : arg.slice(2);
}

const LONG_FLAGS: Record<string, (out: UnpackerArgs) => void> = {
  "--allow-all-names": (out) => (out.allowAllNames = true),
  "--no-allow-all-names": (out) => (out.allowAllNames = false),
  "--verbose": (out) => (out.verbose = true),
};

/** The modern form's options; returns the index of the first positional argument. */
function options(args: string[], out: UnpackerArgs): number | { error: string } {
  let index = 0;
  for (; index < args.length; index++) {
    const arg = args[index]!;
    if (arg === "--") return index + 1;
    if (!arg.startsWith("-") || arg === "-") return index;
    const flag = LONG_FLAGS[arg];
    if (flag) flag(out);
    else if (arg === "-v") out.verbose = true;
    else if (arg.startsWith("-w") || arg.startsWith("--wait-for-space")) {
      const value = margin(marginText(arg, args, index));
      if (arg === "-w" || arg === "--wait-for-space") index++;
      if (value === null) return { error: `${arg} needs a MARGIN from 1 to ${INT_MAX} bytes` };
      out.waitForSpace = value;
    } else if (arg === "--allow-unsafe-symlinks" || arg === "--no-allow-unsafe-symlinks") {
      return { error: `${arg} is not supported (qubes.Filecopy never uses it)` };
    } else return { error: `unknown option ${arg}` };
  }
  return index;
}

export function parseUnpackerArgs(args: string[]): UnpackerArgs | { error: string } {
  if (args.length >= 2 && /^\d/.test(args[0]!)) return legacy(args);
  const out = defaults();
  const start = options(args, out);
  if (typeof start !== "number") return start;
  const positional = args.slice(start);
  if (positional.length > 2) return { error: "too many arguments" };
  if (positional[0] !== undefined) {
    const uid = uidOf(positional[0]);
    if (uid === null) return { error: `invalid UID '${positional[0]}'` };
    out.uid = uid;
  }
  out.dir = positional[1];
  return out;
}
