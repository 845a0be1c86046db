// The command lines `qrx run` takes without commander (src/cli/qrx.ts): exactly those commander
// would read as the same run, and nothing it would read differently or reject.

export interface PlainRun {
  domain: string;
  /** As commander passes it: a `--` after the domain is kept (runInLab drops it). */
  command: string[];
  dir?: string;
}

/** `run [--dir DIR | --dir=DIR] DOMAIN [--] COMMAND...` as commander reads it, else null. */
export function plainRun(args: readonly string[]): PlainRun | null {
  if (args[0] !== "run") return null;
  let index = 1;
  let dir: string | undefined;
  const [first, next] = args.slice(index);
  if (first === "--dir" && next !== undefined && !next.startsWith("-")) {
    dir = next;
    index += 2;
  } else if (first?.startsWith("--dir=")) {
    dir = first.slice("--dir=".length);
    index += 1;
  }
  const domain = args[index];
  const command = args.slice(index + 1);
  if (dir === "" || domain === undefined || domain === "" || domain.startsWith("-")) return null;
  if (command.length === 0 || (command[0] === "--" && command.length === 1)) return null;
  return { domain, command, dir };
}
