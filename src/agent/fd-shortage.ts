// Running out of file descriptors (RLIMIT_NOFILE) in the agent: recognising it behind a failed
// call, and logging it once per shortage rather than once per refused call, since a flood of
// callers is what causes it and would flood the log too.
import { readdirSync, readFileSync } from "node:fs";
import { constants as osConstants } from "node:os";

const SHORT_CODES = new Set(["EMFILE", "ENFILE"]);
const SHORT_ERRNOS = new Map([
  [osConstants.errno.EMFILE, "EMFILE"],
  [osConstants.errno.ENFILE, "ENFILE"],
]);
/** A call set-up needs a handful of fds (trigger socket pair, vchan, stdio copies): fewer free
 * than this, and a failure is put down to the shortage even when its error does not say so. */
const SET_UP_FDS = 16;

/** Free fds under the soft RLIMIT_NOFILE; 0 when looking needs an fd we do not have. */
export function fdHeadroom(): number {
  try {
    const limits = readFileSync("/proc/self/limits", "utf8");
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (!match || match[1] === "unlimited") return Number.POSITIVE_INFINITY;
    return Number(match[1]) - readdirSync("/proc/self/fd").length;
  } catch (error) {
    return fdErrorCode(error) ? 0 : Number.POSITIVE_INFINITY;
  }
}

/** "EMFILE" or "ENFILE" when `error` (or what caused it) is that errno. */
export function fdErrorCode(error: unknown): string | null {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    const { code, errno } = cause as { code?: unknown; errno?: unknown };
    if (typeof code === "string" && SHORT_CODES.has(code)) return code;
    // Native errors carry a positive errno, node's a negative one.
    const named = typeof errno === "number" ? SHORT_ERRNOS.get(Math.abs(errno)) : undefined;
    if (named) return named;
  }
  return null;
}

/**
 * Why `error` happened, if for want of fds: its own errno, or, since some errors lose theirs
 * (Bun reports a failed `socket()` in a connect as ECONNREFUSED), a process that is short now.
 */
export function outOfFds(error: unknown): string | null {
  return fdErrorCode(error) ?? (fdHeadroom() < SET_UP_FDS ? "EMFILE" : null);
}

/** A call set up this long after the last refusal ends a shortage (calls that still find an
 * fd in the middle of one would otherwise end it at every turn). */
const QUIET_MS = 1000;

export class FdShortage {
  readonly #log: (message: string) => void;
  #refused = 0;
  #lastRefusal = 0;
  #code = "EMFILE";

  constructor(log: (message: string) => void) {
    this.#log = log;
  }

  /** The code of the shortage going on now, if any. */
  get ongoing(): string | null {
    return this.#refused > 0 && Date.now() - this.#lastRefusal < QUIET_MS ? this.#code : null;
  }

  /** A call refused for want of fds (`code`: EMFILE or ENFILE). */
  refused(code: string, detail: string): void {
    this.#lastRefusal = Date.now();
    this.#code = code;
    if (this.#refused++ > 0) return;
    const until = "refusing new calls until some are free";
    this.#log(`out of file descriptors (${code}): ${until}; first: ${detail}`);
  }

  /** A call was set up again: the shortage, if any, is over. */
  recovered(): void {
    if (this.#refused === 0 || Date.now() - this.#lastRefusal < QUIET_MS) return;
    const count = this.#refused;
    this.#log(`file descriptors available again; ${count} call(s) were refused for want of them`);
    this.#refused = 0;
  }
}
