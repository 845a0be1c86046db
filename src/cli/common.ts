// What every qrexec program shares: its log line format, fatal exits, log options.
import { writeSync } from "node:fs";
import type { Command } from "commander";
import { createLogger, type Logger, setLogLevel } from "../log.ts";

/**
 * A logger writing `program[pid]: message` lines to stderr (the daemon's is its log file), at the
 * level of src/log.ts: a plain call is info, `.debug` and `.warn` say otherwise.
 */
export function logger(program: string): Logger {
  const prefix = `${program}[${process.pid}]: `;
  return createLogger((message: string) =>
    writeLogLine(`${new Date().toISOString()} ${prefix}${message}\n`),
  );
}

/**
 * One log line, written before the caller goes on: Bun's process.stderr may hold a write back, and
 * whoever reads the log after an event (qrx run's policy notes, tests) must find its line there.
 */
function writeLogLine(line: string): void {
  try {
    writeSync(2, line);
  } catch {
    // A non-blocking stderr that is full (EAGAIN): queued by Bun instead of lost.
    process.stderr.write(line);
  }
}

/** Prints `program: message` and exits with `code`. */
export function die(program: string, message: string, code: number): never {
  process.stderr.write(`${program}: ${message}\n`);
  process.exit(code);
}

/**
 * Upstream's tools run with SIGPIPE ignored (§13.18); Bun already does. fds 0-2 must be open
 * (§13.21).
 */
export function requireStdio(program: string, code: number): void {
  const { fstatSync } = require("node:fs") as typeof import("node:fs");
  for (const fd of [0, 1, 2]) {
    try {
      fstatSync(fd);
    } catch {
      die(program, `file descriptor ${fd} is not open`, code);
    }
  }
}

/**
 * -v/--verbose and --quiet (src/log.ts), applied as they are parsed (the later one wins).
 * `quiet`: false where the program has a --quiet of its own (qrexec-daemon's), which then sets
 * the level too.
 */
export function addLogOptions<T extends Command>(command: T, quiet = true): T {
  command.option("-v, --verbose", "log more: what each step decided (QRX_LOG=debug)");
  if (quiet) command.option("--quiet", "log only warnings and errors (QRX_LOG=warn)");
  command.on("option:verbose", () => setLogLevel("debug"));
  command.on("option:quiet", () => setLogLevel("warn"));
  return command;
}

function isBrokenPipe(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "EPIPE";
}

/**
 * Runs `main` so that a reader going away (`qrx lab logs | head -1`) ends the program as SIGPIPE
 * ends C tools: quietly, with status 141. Bun ignores SIGPIPE, so a write fails with EPIPE
 * instead, synchronously or on the stream.
 */
export async function runUntilBrokenPipe(main: () => Promise<unknown>): Promise<void> {
  process.stdout.on("error", (error) => {
    if (isBrokenPipe(error)) process.exit(141);
    throw error;
  });
  try {
    await main();
  } catch (error) {
    if (isBrokenPipe(error)) process.exit(141);
    throw error;
  }
}
