// The calls an agent is serving, for `qrx lab top` (a qrx extension: qrexec-agent
// --status-file). While any call runs, the file is rewritten twice a second with each call's
// source, service, ring sizes and the bytes its data vchan moved each way; once the last call
// ends it is written once more, empty, if it showed any (a call shorter than the interval never
// costs a write). Replaced atomically, so a reader never sees half of it.
import { replaceFile } from "../io/replace-file.ts";
import type { Stream } from "../native.ts";

const INTERVAL_MS = 500;

export interface RunningCall {
  source: string;
  service: string;
  /** Epoch milliseconds. */
  startedAt: number;
  /** The ring this side reads (what the caller sends) and the one it writes, in bytes. */
  toServiceRingBytes: number;
  fromServiceRingBytes: number;
  /** Bytes on the data vchan so far (message headers included). */
  bytesToService: number;
  bytesFromService: number;
}

export interface CallStatus {
  /** The serving domain's name (QRX_DOMAIN_NAME, else its id). */
  domain: string;
  pid: number;
  /** Epoch milliseconds of this snapshot; a reader ignores a file that stopped being updated. */
  updatedAt: number;
  calls: RunningCall[];
}

interface Entry {
  source: string;
  service: string;
  startedAt: number;
}

export class CallStatusFile {
  readonly #calls = new Map<Stream, Entry>();
  #timer: ReturnType<typeof setInterval> | null = null;
  /** How many calls the file on disk shows. */
  #shown = 0;

  constructor(
    readonly path: string | null,
    readonly domain: string,
  ) {
    this.#write();
  }

  add(stream: Stream, source: string, service: string): void {
    if (this.path === null) return;
    this.#calls.set(stream, { source, service, startedAt: Date.now() });
    if (this.#timer === null) {
      this.#timer = setInterval(() => this.#write(), INTERVAL_MS);
      this.#timer.unref();
    }
  }

  remove(stream: Stream): void {
    if (!this.#calls.delete(stream) || this.#calls.size > 0) return;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#shown > 0) this.#write();
  }

  snapshot(): CallStatus {
    const calls: RunningCall[] = [];
    for (const [stream, entry] of this.#calls) {
      // Not connected yet (no rings) or already finished: nothing to show for it.
      const traffic = stream.traffic();
      if (traffic === null || traffic.readRingBytes === 0) continue;
      calls.push({
        ...entry,
        toServiceRingBytes: traffic.readRingBytes,
        fromServiceRingBytes: traffic.writeRingBytes,
        bytesToService: traffic.bytesRead,
        bytesFromService: traffic.bytesWritten,
      });
    }
    return { domain: this.domain, pid: process.pid, updatedAt: Date.now(), calls };
  }

  #write(): void {
    if (this.path === null) return;
    const snapshot = this.snapshot();
    try {
      replaceFile(this.path, JSON.stringify(snapshot));
      this.#shown = snapshot.calls.length;
    } catch {
      // A convenience, like the daemon's call counts: a full disk must not take calls down.
    }
  }
}
