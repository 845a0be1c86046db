// How many calls a daemon set up, for `qrx lab status` (a qrx extension: --stats-file). Written as
// a small JSON file after every call (tens of microseconds, against milliseconds per call), and
// replaced atomically so a reader never sees half of it.

import { readFileSync, renameSync, writeFileSync } from "node:fs";

export interface CallCounts {
  /**
   * Calls into this daemon's VM (EXEC_CMDLINE / JUST_EXEC from qrexec-client or another daemon).
   */
  served: number;
  /** Calls from this VM into dom0, run by this daemon. */
  toDom0: number;
}

export class CallStats {
  readonly counts: CallCounts = { served: 0, toDom0: 0 };

  /** A restarted daemon goes on counting from what the file says. */
  constructor(readonly path: string | null) {
    if (path === null) return;
    try {
      const saved = JSON.parse(readFileSync(path, "utf8")) as Partial<CallCounts>;
      for (const key of ["served", "toDom0"] as const) {
        const value = saved[key];
        if (typeof value === "number" && Number.isSafeInteger(value)) this.counts[key] = value;
      }
    } catch {
      // No file yet, or a broken one: count from zero.
    }
    this.flush();
  }

  count(kind: keyof CallCounts): void {
    this.counts[kind]++;
    this.flush();
  }

  flush(): void {
    if (this.path === null) return;
    try {
      writeFileSync(`${this.path}.tmp`, JSON.stringify(this.counts));
      renameSync(`${this.path}.tmp`, this.path);
    } catch {
      // Statistics are a convenience: a full disk must not take calls down.
    }
  }
}
