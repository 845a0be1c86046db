// `qrx bench copy`: qvm-copy from work to vault in a default lab, beside the tar pipeline
//   tar -C src -cf - NAME | cat | cat | tar -C dst -xf -
// (four processes, like ours: qfile-agent, qrexec-client-vm, the target's agent, qfile-unpacker)
// in the same run, on the same files and the same filesystem. Two data sets: one big file
// (`--bytes`, default 1 GiB, pseudo-random) and `--files` small files (default 10,000 of 4 KiB)
// in one directory. Each run is timed from spawn to exit; ours includes the policy decision,
// the call set-up and the receiver's syncfs (spec §3.10), which tar does not do. `--rounds`
// pairs of runs per data set (see pairedRuns); a row is the median of its runs.
//
// The lab lives on /dev/shm when there is one, so neither side waits for a disk (the syncfs then
// costs nothing); elsewhere both write through the page cache of the temp directory's disk.
//
// Rows: {name: "big-file"|"small-files"|"baseline:tar-big"|"baseline:tar-small", bytes, files,
// seconds, mbps, filesPerSec, runs}.

import { runToEnd } from "../io/run-to-end.ts";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { labDown, labLayout, labUp } from "../lab/control.ts";
import { BIN_DIR, domainEnv } from "../lab/environment.ts";
import type { LabLayout } from "../lab/layout.ts";
import { writeRandomFile, writeRepeated } from "../tools/random-file.ts";
import { median } from "../stats.ts";
import { printTable } from "./table.ts";
import { inTurns, ratioLine } from "./rounds.ts";

export interface CopyBenchRow {
  name: "big-file" | "small-files" | "baseline:tar-big" | "baseline:tar-small";
  bytes: number;
  files: number;
  /** The median round's seconds; mbps and filesPerSec follow from it. */
  seconds: number;
  mbps: number;
  filesPerSec: number;
  /** Seconds of each round, in the order they ran. */
  runs: number[];
}

export interface CopyBenchOptions {
  bytes: number;
  files: number;
  fileBytes: number;
  rounds: number;
  progress: boolean;
}

function row(
  name: CopyBenchRow["name"],
  bytes: number,
  files: number,
  runs: number[],
): CopyBenchRow {
  const seconds = median(runs);
  return {
    name,
    bytes,
    files,
    seconds,
    mbps: bytes / 1e6 / seconds,
    filesPerSec: files / seconds,
    runs,
  };
}

function writeSmallFiles(dir: string, files: number, fileBytes: number): void {
  mkdirSync(dir, { recursive: true });
  const content = new Uint8Array(fileBytes);
  for (let index = 0; index < files; index++) {
    crypto.getRandomValues(content.subarray(0, Math.min(64, fileBytes)));
    const fd = openSync(join(dir, `f${String(index).padStart(5, "0")}`), "w");
    writeSync(fd, content);
    closeSync(fd);
  }
}

/**
 * Writes and deletes `bytes` in `dir`, so that the row run next writes into pages the kernel
 * has just freed. A page this VM has not touched for a while is one the host took back (virtio
 * free page reporting): writing 1 GiB into such pages ran at 0.36 GB/s here against 3 GB/s into
 * recently freed ones, which decided the big-file ratio more than any code did.
 */
function warmPages(dir: string, bytes: number): void {
  const path = join(dir, "warm-pages");
  try {
    writeRepeated(path, new Uint8Array(Math.min(bytes, 1 << 20)), bytes);
  } finally {
    rmSync(path, { force: true });
  }
}

async function timed(argv: string[], env: Record<string, string>, cwd: string): Promise<number> {
  const { code, stdout, stderr, ms } = await runToEnd(argv, { env, cwd });
  if (code !== 0) throw new Error(`\`${argv.join(" ")}\` exited ${code}: ${stdout}${stderr}`);
  return ms / 1000;
}

/** One timed transfer; `check` runs untimed after it, `clear` removes what it wrote. */
interface Transfer {
  run: () => Promise<number>;
  check: () => void;
  clear: () => void;
}

/**
 * `rounds` rounds of the baseline and ours on one data set, alternating which goes first, each
 * run into warm pages and its output deleted after it: both then meet the same memory.
 */
async function pairedRuns(
  rounds: number,
  warm: () => void,
  baseline: Transfer,
  ours: Transfer,
  say: (text: string) => void,
): Promise<{ baseline: number[]; ours: number[] }> {
  const times = { baseline: [] as number[], ours: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    for (const which of inTurns(["baseline", "ours"] as const, round)) {
      const transfer = which === "baseline" ? baseline : ours;
      transfer.clear();
      warm();
      const seconds = await transfer.run();
      transfer.check();
      transfer.clear();
      times[which].push(seconds);
      say(`  round ${round + 1}, ${which}: ${seconds.toFixed(3)} s`);
    }
  }
  return times;
}

interface BenchSetting {
  env: Record<string, string>;
  /** work's directory with big.bin and small/ in it. */
  source: string;
  /** Where qvm-copy puts them in vault. */
  incoming: string;
  /** Where the tar pipeline puts them. */
  tarTarget: string;
}

/** `qvm-copy-to-vm vault NAME` in work. */
function copyTransfer(setting: BenchSetting, name: string, check: () => void): Transfer {
  const { env, source, incoming } = setting;
  return {
    run: () =>
      timed([join(BIN_DIR, "qvm-copy-to-vm"), "--without-progress", "vault", name], env, source),
    check,
    clear: () => rmSync(incoming, { recursive: true, force: true }),
  };
}

/** The baseline: `tar c NAME | cat | cat | tar x` on the same file system. */
function tarTransfer(setting: BenchSetting, name: string): Transfer {
  const { env, source, tarTarget } = setting;
  return {
    run: () => {
      mkdirSync(tarTarget);
      const pipeline =
        `set -o pipefail; tar -C '${source}' -cf - ` +
        `'${name}' | cat | cat | tar -C '${tarTarget}' -xf -`;
      return timed(["bash", "-c", pipeline], env, source);
    },
    check: () => {},
    clear: () => rmSync(tarTarget, { recursive: true, force: true }),
  };
}

async function benchInLab(
  layout: LabLayout,
  options: CopyBenchOptions,
  say: (text: string) => void,
): Promise<CopyBenchRow[]> {
  const status = await labUp(layout, { isolation: "none" });
  const work = status.domains.find((domain) => domain.name === "work")!;
  const setting: BenchSetting = {
    env: domainEnv(layout, work, status.transport === "socket" ? "socket" : "shm"),
    source: join(layout.home("work"), "bench"),
    incoming: join(layout.home("vault"), "QubesIncoming", "work"),
    tarTarget: join(layout.dir, "tar-target"),
  };
  mkdirSync(setting.source, { recursive: true });
  say(`writing ${options.bytes} bytes and ${options.files} files of ${options.fileBytes} bytes`);
  writeRandomFile(join(setting.source, "big.bin"), options.bytes);
  writeSmallFiles(join(setting.source, "small"), options.files, options.fileBytes);
  const lastSmall = `f${String(options.files - 1).padStart(5, "0")}`;
  const checkBig = () => {
    if (statSync(join(setting.incoming, "big.bin")).size !== options.bytes)
      throw new Error("big-file: the received file has the wrong size");
  };
  const checkSmall = () => {
    if (!existsSync(join(setting.incoming, "small", lastSmall)))
      throw new Error("small-files: the last file did not arrive");
  };

  say("big file:");
  const big = await pairedRuns(
    options.rounds,
    () => warmPages(layout.dir, options.bytes),
    tarTransfer(setting, "big.bin"),
    copyTransfer(setting, "big.bin", checkBig),
    say,
  );
  say("small files:");
  const smallBytes = options.files * options.fileBytes;
  const small = await pairedRuns(
    options.rounds,
    () => warmPages(layout.dir, smallBytes),
    tarTransfer(setting, "small"),
    copyTransfer(setting, "small", checkSmall),
    say,
  );
  return [
    row("baseline:tar-big", options.bytes, 1, big.baseline),
    row("big-file", options.bytes, 1, big.ours),
    row("baseline:tar-small", smallBytes, options.files, small.baseline),
    row("small-files", smallBytes, options.files, small.ours),
  ];
}

export async function runCopyBench(options: CopyBenchOptions): Promise<CopyBenchRow[]> {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const layout = labLayout(mkdtempSync(join(base, "qrx-bench-copy-")));
  const say = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  try {
    say(`bench copy: lab in ${layout.dir}`);
    const rows = await benchInLab(layout, options, say);
    for (const entry of rows)
      say(
        `  ${entry.name}: ${entry.mbps.toFixed(0)} MB/s, ` +
          `${entry.filesPerSec.toFixed(0)} files/s (median of ${entry.runs.length})`,
      );
    return rows;
  } finally {
    // A lab that fails to go down must not hide the bench's own result or error.
    await labDown(layout).catch(() => {});
    rmSync(layout.dir, { recursive: true, force: true });
  }
}

export function printCopyBench(rows: CopyBenchRow[]): void {
  printTable([
    ["name", "MB/s", "files/s", "seconds", "runs (s)"],
    ...rows.map((entry) => [
      entry.name,
      entry.mbps.toFixed(0),
      entry.filesPerSec.toFixed(0),
      entry.seconds.toFixed(3),
      entry.runs.map((seconds) => seconds.toFixed(3)).join(" "),
    ]),
  ]);
  const find = (name: string) => rows.find((entry) => entry.name === name);
  const big = find("big-file");
  const tarBig = find("baseline:tar-big");
  const small = find("small-files");
  if (big && tarBig) console.log(`\n${ratioLine(["big file", "tar pipeline"], big, tarBig, 0.8)}`);
  if (small)
    console.log(
      `small files: ${small.filesPerSec.toFixed(0)} files/s (target ` +
        `>= 5,000): ${small.filesPerSec >= 5000 ? "met" : "MISSED"}`,
    );
}
