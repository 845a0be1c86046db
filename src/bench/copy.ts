// `qrx bench copy`: qvm-copy from work to vault in a default lab, beside the tar pipeline
//   tar -C src -cf - NAME | cat | cat | tar -C dst -xf -
// (four processes, like ours: qfile-agent, qrexec-client-vm, the target's agent, qfile-unpacker)
// in the same run, on the same files and the same filesystem. Two data sets: one big file
// (`--bytes`, default 1 GiB, pseudo-random) and `--files` small files (default 10,000 of 4 KiB)
// in one directory. Each row is timed from spawn to exit; ours includes the policy decision,
// the call set-up and the receiver's syncfs (spec §3.10), which tar does not do.
//
// The lab lives on /dev/shm when there is one, so neither side waits for a disk (the syncfs then
// costs nothing); elsewhere both write through the page cache of the temp directory's disk.
//
// Rows: {name: "big-file"|"small-files"|"baseline:tar-big"|"baseline:tar-small", bytes, files,
// seconds, mbps, filesPerSec}.

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
import { writeRandomFile } from "../tools/random-file.ts";

export interface CopyBenchRow {
  name: "big-file" | "small-files" | "baseline:tar-big" | "baseline:tar-small";
  bytes: number;
  files: number;
  seconds: number;
  mbps: number;
  filesPerSec: number;
}

export interface CopyBenchOptions {
  bytes: number;
  files: number;
  fileBytes: number;
  progress: boolean;
}

function row(
  name: CopyBenchRow["name"],
  bytes: number,
  files: number,
  seconds: number,
): CopyBenchRow {
  return { name, bytes, files, seconds, mbps: bytes / 1e6 / seconds, filesPerSec: files / seconds };
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

async function timed(argv: string[], env: Record<string, string>, cwd: string): Promise<number> {
  const started = performance.now();
  const child = Bun.spawn(argv, { env, cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`\`${argv.join(" ")}\` exited ${code}: ${stdout}${stderr}`);
  return seconds;
}

export async function runCopyBench(options: CopyBenchOptions): Promise<CopyBenchRow[]> {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const layout = labLayout(mkdtempSync(join(base, "qrx-bench-copy-")));
  const say = (text: string) => options.progress && process.stderr.write(`${text}\n`);
  const rows: CopyBenchRow[] = [];
  const record = (entry: CopyBenchRow) => {
    rows.push(entry);
    say(
      `  ${entry.name}: ${entry.mbps.toFixed(0)} MB/s, ` +
        `${entry.filesPerSec.toFixed(0)} files/s (${entry.seconds.toFixed(3)} s)`,
    );
  };
  try {
    say(`bench copy: lab in ${layout.dir}`);
    const status = await labUp(layout, { isolation: "none" });
    const work = status.domains.find((domain) => domain.name === "work")!;
    const env = domainEnv(layout, work, status.transport === "socket" ? "socket" : "shm");
    const source = join(layout.home("work"), "bench");
    const incoming = join(layout.home("vault"), "QubesIncoming", "work");
    const tarTarget = join(layout.dir, "tar-target");
    mkdirSync(source, { recursive: true });
    say(
      `writing ${options.bytes} bytes and ${options.files} ` +
        `files of ${options.fileBytes} bytes in work`,
    );
    writeRandomFile(join(source, "big.bin"), options.bytes);
    writeSmallFiles(join(source, "small"), options.files, options.fileBytes);

    const copy = (name: string) =>
      timed([join(BIN_DIR, "qvm-copy-to-vm"), "--without-progress", "vault", name], env, source);
    const tar = (name: string) => {
      rmSync(tarTarget, { recursive: true, force: true });
      mkdirSync(tarTarget);
      return timed(
        [
          "bash",
          "-c",
          `set -o pipefail; tar -C '${source}' -cf - ` +
            `'${name}' | cat | cat | tar -C '${tarTarget}' -xf -`,
        ],
        env,
        source,
      );
    };
    const clearIncoming = () => rmSync(incoming, { recursive: true, force: true });

    // Baseline first, then ours, for each set: both read the same files from the page cache.
    record(row("baseline:tar-big", options.bytes, 1, await tar("big.bin")));
    clearIncoming();
    record(row("big-file", options.bytes, 1, await copy("big.bin")));
    if (statSync(join(incoming, "big.bin")).size !== options.bytes)
      throw new Error("big-file: the received file has the wrong size");
    const smallBytes = options.files * options.fileBytes;
    record(row("baseline:tar-small", smallBytes, options.files, await tar("small")));
    clearIncoming();
    record(row("small-files", smallBytes, options.files, await copy("small")));
    if (!existsSync(join(incoming, "small", `f${String(options.files - 1).padStart(5, "0")}`)))
      throw new Error("small-files: the last file did not arrive");
    return rows;
  } finally {
    // A lab that fails to go down must not hide the bench's own result or error.
    await labDown(layout).catch(() => {});
    rmSync(layout.dir, { recursive: true, force: true });
  }
}

export function printCopyBench(rows: CopyBenchRow[]): void {
  console.log(
    `${"name".padEnd(20)} ${"MB/s".padStart(8)} ${"files/s".padStart(9)} ${"seconds".padStart(8)}`,
  );
  for (const entry of rows) {
    console.log(
      `${entry.name.padEnd(20)} ${entry.mbps.toFixed(0).padStart(8)} ` +
        `${entry.filesPerSec.toFixed(0).padStart(9)} ${entry.seconds.toFixed(3).padStart(8)}`,
    );
  }
  const find = (name: string) => rows.find((entry) => entry.name === name);
  const big = find("big-file");
  const tarBig = find("baseline:tar-big");
  const small = find("small-files");
  if (big && tarBig) {
    const ratio = big.mbps / tarBig.mbps;
    console.log(
      `\nbig file vs tar pipeline: ${(ratio * 100).toFixed(0)}% ` +
        `(target >= 80%): ${ratio >= 0.8 ? "met" : "MISSED"}`,
    );
  }
  if (small)
    console.log(
      `small files: ${small.filesPerSec.toFixed(0)} files/s (target ` +
        `>= 5,000): ${small.filesPerSec >= 5000 ? "met" : "MISSED"}`,
    );
}
