// What a file copy shows while it runs: bytes done of the total, rate and ETA, redrawn at most
// ten times a second on a terminal, and one final line that says exactly what was sent
// ("sent 1.00 GiB of 1.00 GiB in 0.9 s, 1.1 GiB/s"). Upstream printed "sent 36/37 KB" with
// rounded-up KiB on both sides; ours counts bytes and says how long it took.

const REDRAW_INTERVAL_MS = 100;
/** When progress goes to a log rather than a terminal, a line this often is plenty. */
const LINE_INTERVAL_MS = 1_000;

export function formatBytes(bytes: number, digits = 2): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(digits)} ${units[unit]}`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond, 1)}/s`;
}

export function formatSeconds(seconds: number): string {
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const twoDigits = (value: number) => String(Math.floor(value)).padStart(2, "0");
  if (seconds < 3600) return `${Math.floor(seconds / 60)}:${twoDigits(seconds % 60)}`;
  const hours = Math.floor(seconds / 3600);
  return `${hours}:${twoDigits((seconds % 3600) / 60)}:${twoDigits(seconds % 60)}`;
}

export interface ProgressOptions {
  /** Bytes of file content to send (what the pre-flight counted), or null when unknown. */
  total: number | null;
  /** A terminal gets a line redrawn in place; anything else a line per second. */
  terminal: boolean;
  write: (text: string) => void;
  now?: () => number;
}

export class Progress {
  readonly #started: number;
  #lastDraw = -Infinity;
  #drawn = false;
  readonly #now: () => number;

  constructor(readonly options: ProgressOptions) {
    this.#now = options.now ?? (() => performance.now());
    this.#started = this.#now();
  }

  #line(done: number): string {
    const seconds = (this.#now() - this.#started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const { total } = this.options;
    const of = total === null ? formatBytes(done) : `${formatBytes(done)} / ${formatBytes(total)}`;
    const percent = total ? ` (${Math.floor((100 * done) / total)}%)` : "";
    const eta =
      total !== null && rate > 0 && done < total
        ? `, ETA ${formatSeconds((total - done) / rate)}`
        : "";
    return `${of}${percent}, ${formatRate(rate)}${eta}`;
  }

  /** Called as bytes go out; draws only when the interval has passed. */
  update(done: number): void {
    const now = this.#now();
    const interval = this.options.terminal ? REDRAW_INTERVAL_MS : LINE_INTERVAL_MS;
    if (now - this.#lastDraw < interval) return;
    this.#lastDraw = now;
    const line = this.#line(done);
    if (this.options.terminal) {
      this.options.write(`\r\x1b[K${line}`);
      this.#drawn = true;
    } else {
      this.options.write(`${line}\n`);
    }
  }

  /** Clears a redrawn line, so an error message starts on a clean one. */
  clear(): void {
    if (this.#drawn) this.options.write("\r\x1b[K");
    this.#drawn = false;
  }

  /** The last word: what was sent, of what, in how long, how fast. */
  finish(done: number): void {
    this.clear();
    const seconds = (this.#now() - this.#started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const of = this.options.total === null ? "" : ` of ${formatBytes(this.options.total)}`;
    this.options.write(
      `sent ${formatBytes(done)}${of} in ${seconds.toFixed(1)} s, ${formatRate(rate)}\n`,
    );
  }
}
