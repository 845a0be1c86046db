// Cheap output for the CLIs' start (docs/architecture.md, "Start-up"). Bun builds a node stream
// the first time process.stdout or process.stderr is touched, and node:tty loads node:net: each
// costs ~11 ms of CPU, twice what Bun's own start costs. Help and usage text therefore goes out
// another way, and a terminal is detected without either.
import type { Command } from "commander";

type TtyBinding = { isTTY(fd: number): boolean };

/** isatty(fd), from the binding node:tty's own isatty uses; node:tty itself if that is gone. */
export function isTerminal(fd: number): boolean {
  let binding: TtyBinding | undefined;
  try {
    binding = (process as unknown as { binding(name: string): TtyBinding }).binding("tty_wrap");
  } catch {
    // No such binding in this runtime: node:tty answers below.
  }
  if (typeof binding?.isTTY === "function") return binding.isTTY(fd);
  return (require("node:tty") as typeof import("node:tty")).isatty(fd);
}

/**
 * Writes all of TEXT to fd 1 or 2 before the process exits. A line goes through console (Bun's
 * native writer: no stream, no node:fs); a reader that went away (EPIPE) is not an error.
 */
export function writeText(fd: 1 | 2, text: string): void {
  if (text.endsWith("\n")) {
    (fd === 1 ? console.log : console.error)(text.slice(0, -1));
    return;
  }
  const { writeSync } = require("node:fs") as typeof import("node:fs");
  const bytes = Buffer.from(text);
  let offset = 0;
  try {
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EPIPE") return;
    // A non-blocking fd that is full (EAGAIN), or anything else: the stream, as before.
    (fd === 1 ? process.stdout : process.stderr).write(bytes.subarray(offset));
  }
}

/** Commander's useColor (lib/command.js, not exported by the package): the environment's say. */
function useColor(): boolean | undefined {
  const env = process.env;
  if (env.NO_COLOR || env.FORCE_COLOR === "0" || env.FORCE_COLOR === "false") return false;
  if (env.FORCE_COLOR || env.CLICOLOR_FORCE !== undefined) return true;
  return undefined;
}

/**
 * Makes PROGRAM (and the commands added to it afterwards, which inherit this) print with
 * writeText, and ask the streams about width and colours only for a terminal, which is when
 * commander's defaults would have found anything there (identical output).
 */
export function cheapOutput(program: Command): Command {
  const original = program.configureOutput();
  return program.configureOutput({
    writeOut: (text) => writeText(1, text),
    writeErr: (text) => writeText(2, text),
    // Commander's own default width when it has none.
    getOutHelpWidth: () => (isTerminal(1) ? original.getOutHelpWidth?.() : undefined) ?? 80,
    getErrHelpWidth: () => (isTerminal(2) ? original.getErrHelpWidth?.() : undefined) ?? 80,
    getOutHasColors: () => (isTerminal(1) ? original.getOutHasColors!() : (useColor() ?? false)),
    getErrHasColors: () => (isTerminal(2) ? original.getErrHasColors!() : (useColor() ?? false)),
  });
}
