// How many calls a daemon set up, for `qrx lab status` (a qrx extension: --stats-file). Written as
// a small JSON file after every call, replaced atomically so a reader never sees half of it. The
// write waits for the next turn of the event loop, so it never delays the call being set up,
// and the calls of one turn share it.

import { readFileSync } from "node:fs";
import { replaceFile } from "../io/replace-file.ts";

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
  #pending: ReturnType<typeof setTimeout> | null = null;

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
    if (this.path === null || this.#pending !== null) return;
    this.#pending = setTimeout(() => this.flush(), 0);
    this.#pending.unref();
  }

  /** Writes the counts now (a pending write is then not needed). */
  flush(): void {
    if (this.#pending !== null) clearTimeout(this.#pending);
    this.#pending = null;
    if (this.path === null) return;
    try {
      replaceFile(this.path, JSON.stringify(this.counts));
    } catch {
      // Statistics are a convenience: a full disk must not take calls down.
    }
  }
}
