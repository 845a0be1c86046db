// qvm-copy, qvm-move, qvm-copy-to-vm, qvm-move-to-vm (spec §5): one program, four names (the
// launchers in bin/ set QRX_PROGRAM_NAME). Checks the sources, picks qubes.Filecopy or
// qubes.Filecopy+allow-all-names, and runs
// qrexec-client-vm --filter-escape-chars-stderr -- TARGET SERVICE qfile-agent [--ignore-symlinks]
// -- SOURCES
// with TARGET @default (dom0's policy picks or asks) or the given VM. A move deletes the sources
// only once the receiver reported success, which it does only after syncing them to disk.
import { rmSync } from "node:fs";
import { basename, join } from "node:path";
import { BIN_DIR } from "../install-paths.ts";
import { isTerminal, writeText } from "./output.ts";

const name =
  process.env.QRX_PROGRAM_NAME ?? basename(process.argv[1] ?? "qvm-copy").replace(/\.[jt]s$/, "");
const move = name.startsWith("qvm-move");
const toVm = name.endsWith("-to-vm");

const ANY_QUBE = "a qube that dom0's policy picks or asks you for (target @default)";
const MOVED = "; the sources are deleted once the receiver has them on disk";

function usage(code: number): never {
  const target = toVm ? "VM " : "";
  const what = move ? "Move" : "Copy";
  const text =
    `usage: ${name} [--with-progress|--without-progress] ` +
    `[--ignore-symlinks|--no-ignore-symlinks] [--] ${target}FILE...

${what} files to ${toVm ? "VM" : ANY_QUBE}${move ? MOVED : ""}.
Files arrive in ~/QubesIncoming/<this qube> of the target.

  --with-progress       show progress (the default on a terminal): ` +
    `bytes, rate, ETA, then what was sent
  --without-progress    print only errors
  --ignore-symlinks     leave symbolic links out
  --no-ignore-symlinks  copy symbolic links (the default; they must point inside what is copied)

Examples:
  ${toVm ? `${name} vault report.pdf photos/` : `${name} report.pdf photos/`}
  ${name} --without-progress ${toVm ? "vault " : ""}big.iso
`;
  writeText(code === 0 ? 1 : 2, text);
  process.exit(code);
}

let progressMode: "auto" | "on" | "off" = "auto";
let ignoreSymlinks = false;
const positional: string[] = [];
const args = process.argv.slice(2);
let index = 0;
for (; index < args.length; index++) {
  const arg = args[index]!;
  if (arg === "--") {
    index++;
    break;
  }
  if (arg === "--with-progress") progressMode = "on";
  else if (arg === "--without-progress") progressMode = "off";
  else if (arg === "--ignore-symlinks") ignoreSymlinks = true;
  else if (arg === "--no-ignore-symlinks") ignoreSymlinks = false;
  else if (arg === "-h" || arg === "--help") usage(0);
  else if (arg.startsWith("-") && arg !== "-") usage(1);
  else break;
}
positional.push(...args.slice(index));
if (positional.length < (toVm ? 2 : 1)) usage(1);
const target = toVm ? positional.shift()! : "@default";
if (toVm)
  writeText(
    2,
    `${name}: consider ${move ? "qvm-move" : "qvm-copy"}, which lets dom0 choose the target\n`,
  );
void copy();

/** The tree check (and the native library under it) loads here: --help needs neither. */
async function copy(): Promise<void> {
  const { checkTree, normalizeSource } = await import("../filecopy/tree-check.ts");
  const sources = positional.map(normalizeSource);

  const check = checkTree(sources, { ignoreSymlinks });
  if (check.status === 1) {
    for (const problem of check.problems) writeText(2, `${name}: ${problem}\n`);
    process.exit(1);
  }
  const service = check.status === 2 ? "qubes.Filecopy+allow-all-names" : "qubes.Filecopy";

  const showProgress = progressMode === "on" || (progressMode === "auto" && isTerminal(2));
  const env: Record<string, string | undefined> = {
    ...process.env,
    PROGRESS_TYPE: showProgress ? "console" : "none",
    FILECOPY_TOTAL_BYTES: String(check.totalBytes),
  };
  const argv = [
    join(BIN_DIR, "qrexec-client-vm"),
    "--filter-escape-chars-stderr",
    "--",
    target,
    service,
    join(BIN_DIR, "qfile-agent"),
    ...(ignoreSymlinks ? ["--ignore-symlinks"] : []),
    "--",
    ...sources,
  ];
  const child = Bun.spawn(argv, { env, stdio: ["inherit", "inherit", "inherit"] });
  // ^C reaches the whole process group; the status is what qrexec-client-vm reports.
  process.on("SIGINT", () => {});
  const status = await child.exited;
  if (status === 0 && move) {
    for (const source of sources) {
      try {
        rmSync(source, { recursive: true, force: true });
      } catch (error) {
        writeText(
          2,
          `${name}: copied, but cannot remove ${source}: ` +
            `${error instanceof Error ? error.message : String(error)}\n`,
        );
        process.exit(1);
      }
    }
  }
  process.exit(status);
}
