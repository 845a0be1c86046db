// Strings another domain chose, made safe for dom0's log lines: never longer than a few hundred
// bytes whatever was sent (a VM could otherwise turn each 64 KB trigger into 128 KB of dom0 log,
// once from qrexec-daemon and once from the policy daemon), never a control character that could
// fake a line or drive a terminal; and repeated refusals per source are rate-limited.

/** Characters of an untrusted string kept in a log line; the rest is replaced by its length. */
export const LOG_TEXT_MAX = 128;

const ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\" };

function escapeChar(char: string): string {
  return ESCAPES[char] ?? `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`;
}

/**
 * `text` for a log line: at most `max` characters of it, control characters (C0, DEL, C1) and
 * backslashes escaped, and when cut, how long it really was.
 */
export function untrusted(text: string, max: number = LOG_TEXT_MAX): string {
  const kept = text.length > max ? text.slice(0, max) : text;
  const escaped = kept.replace(/[\x00-\x1f\x7f-\x9f\\]/g, escapeChar);
  if (kept.length === text.length) return escaped;
  return `${escaped}...(${Buffer.byteLength(text)} bytes in all)`;
}

export interface RefusalLogOptions {
  /** Lines logged per source and window before dropping. */
  burst?: number;
  windowMs?: number;
  now?: () => number;
}

interface SourceWindow {
  started: number;
  lines: number;
  dropped: number;
}

/** Sources tracked at once; a peer that invents source names only resets the windows. */
const SOURCES_MAX = 1024;

/**
 * Refusal lines, rate-limited per source: `burst` lines per window, then one line saying that
 * lines are dropped, then nothing until the window ends; the next line after it says how many
 * were dropped. Refusals cost a VM nothing, so without this it decides how much dom0 logs.
 */
export class RefusalLog {
  readonly #log: (line: string) => void;
  readonly #burst: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #sources = new Map<string, SourceWindow>();

  constructor(log: (line: string) => void, options: RefusalLogOptions = {}) {
    this.#log = log;
    this.#burst = options.burst ?? 20;
    this.#windowMs = options.windowMs ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Logs `line`, a refusal of a request from `source`, unless that source is over its limit. */
  log(source: string, line: string): void {
    const window = this.#windowOf(source);
    window.lines++;
    if (window.lines <= this.#burst) return this.#log(line);
    window.dropped++;
    if (window.lines === this.#burst + 1) {
      const seconds = this.#windowMs / 1000;
      const from = `${this.#burst} refusals from ${untrusted(source)} in ${seconds} s`;
      this.#log(`more than ${from}: not logging more of them for now`);
    }
  }

  #windowOf(source: string): SourceWindow {
    const now = this.#now();
    let window = this.#sources.get(source);
    if (window !== undefined && now - window.started < this.#windowMs) return window;
    if (window !== undefined && window.dropped > 0) {
      const from = `${window.dropped} refusal line(s) from ${untrusted(source)}`;
      this.#log(`${from} were not logged (rate limit)`);
    }
    if (window === undefined && this.#sources.size >= SOURCES_MAX) this.#sources.clear();
    window = { started: now, lines: 0, dropped: 0 };
    this.#sources.set(source, window);
    return window;
  }
}
