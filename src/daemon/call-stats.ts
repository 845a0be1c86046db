// How many calls a daemon set up, for `qrx lab status` (a qrx extension: --stats-file). Written as
// a small JSON file, coalesced so a burst of calls costs one write, and replaced atomically so a
// reader never sees half of it.

import { renameSync, writeFileSync } from "node:fs";

const COALESCE_MS = 50;

export interface CallCounts {
  /** Calls into this daemon's VM (EXEC_CMDLINE / JUST_EXEC from qrexec-client or another daemon). */
  served: number;
  /** Calls from this VM into dom0, run by this daemon. */
  toDom0: number;
}

export class CallStats {
  readonly counts: CallCounts = { served: 0, toDom0: 0 };
  #timer: Timer | null = null;

  constructor(readonly path: string | null) {
    this.flush();
  }

  count(kind: keyof CallCounts): void {
    this.counts[kind]++;
    if (this.path === null || this.#timer !== null) return;
    this.#timer = setTimeout(() => this.flush(), COALESCE_MS);
    this.#timer.unref();
  }

  flush(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.path === null) return;
    try {
      writeFileSync(`${this.path}.tmp`, JSON.stringify(this.counts));
      renameSync(`${this.path}.tmp`, this.path);
    } catch {
      // Statistics are a convenience: a full disk must not take calls down.
    }
  }
}
