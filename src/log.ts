// Log levels for every program of qrx: QRX_LOG=debug|info|warn, or -v/--verbose (debug) and
// --quiet (warn) on a command line. The default, info, prints exactly what the programs always
// printed (upstream's output); debug adds detail, warn keeps only warnings and errors. A flag
// writes QRX_LOG back into the environment so every process started from there on (a lab's
// admin service, agents, daemons, the programs of `qrx run`) logs at the same level.

export const LOG_LEVELS = ["debug", "info", "warn"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2 };

let current: LogLevel | null = null;

function fromEnvironment(env: NodeJS.ProcessEnv): LogLevel {
  const text = env.QRX_LOG;
  if (text === undefined || text === "") return "info";
  if ((LOG_LEVELS as readonly string[]).includes(text)) return text as LogLevel;
  // Said once, and not fatal: a typo in a variable must not stop a daemon from starting.
  process.stderr.write(
    `qrx: QRX_LOG must be debug, info or warn, not ${JSON.stringify(text)}; using info\n`,
  );
  return "info";
}

export function logLevel(): LogLevel {
  current ??= fromEnvironment(process.env);
  return current;
}

/** Sets the level of this process and of the processes it starts. */
export function setLogLevel(level: LogLevel): void {
  current = level;
  process.env.QRX_LOG = level;
}

export function logEnabled(level: LogLevel): boolean {
  return RANK[level] >= RANK[logLevel()];
}

/** Logs at info when called; .debug/.info/.warn name the level. */
export interface Logger {
  (message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

export function createLogger(write: (message: string) => void): Logger {
  const at = (level: LogLevel) => (message: string) => {
    if (logEnabled(level)) write(message);
  };
  return Object.assign(at("info"), { debug: at("debug"), info: at("info"), warn: at("warn") });
}
