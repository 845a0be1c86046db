// The policy daemon's view of the registry: GetSystemInfo's JSON in a file, rewritten whenever it
// changes, so the daemon checks a stat per request instead of asking the admin service
// (src/policy/system-info.ts). Each version is written aside and renamed into place: a reader
// sees the old one or the new one, never half of one.

import { rmSync } from "node:fs";
import { replaceFile } from "../io/replace-file.ts";

export class SystemInfoPublisher {
  #published: string | null = null;

  constructor(
    readonly path: string,
    readonly log: (message: string) => void,
  ) {}

  publish(info: unknown): void {
    const text = JSON.stringify(info);
    if (text === this.#published) return;
    try {
      replaceFile(this.path, text);
      this.#published = text;
    } catch (error) {
      // Stale facts could allow what the policy no longer would: without the file, the policy
      // daemon denies every call (and says why) until the next change writes it again.
      this.log(`cannot write ${this.path}: ${(error as Error).message}; calls are denied`);
      this.#published = null;
      rmSync(this.path, { force: true });
    }
  }
}
