// Domain facts asked live from qubesd's internal.GetSystemInfo (§1, §11.1), as upstream's policy
// daemon does for every request; or read from a file of the same JSON that its writer replaces
// (by rename) on every change, which the lab's admin keeps for its policy daemon. A domains file
// is the static alternative.

import { fstatSync, openSync, closeSync, readFileSync, statSync } from "node:fs";
import { qubesdCallText } from "../admin/qubesd.ts";
import { TableDomainFacts } from "./domains.ts";
import { parseDomains } from "./domains-file.ts";

export async function fetchSystemInfo(socketPath: string): Promise<TableDomainFacts> {
  const text = await qubesdCallText(socketPath, "internal.GetSystemInfo", "dom0");
  // The reply is GetSystemInfo's JSON; the ".json" name picks the JSON syntax.
  return new TableDomainFacts(parseDomains(text, `${socketPath} (internal.GetSystemInfo).json`));
}

/**
 * A system-info file, read again whenever its identity changes: one stat per request instead
 * of a round trip to the admin service (~0.4 ms of every call from a VM in the lab). Its writer
 * renames each new version into place, so a new version is a new inode and a reader never sees
 * half of one; a missing or unreadable file throws (the request is denied).
 */
export class SystemInfoFile {
  #identity = "";
  #facts: TableDomainFacts | null = null;

  constructor(readonly path: string) {}

  current(): TableDomainFacts {
    const seen = statSync(this.path, { bigint: true });
    if (this.#facts !== null && identity(seen) === this.#identity) return this.#facts;
    const fd = openSync(this.path, "r");
    try {
      // What the fd holds, whatever replaced the name since the stat above.
      const opened = fstatSync(fd, { bigint: true });
      const text = readFileSync(fd, "utf8");
      // The ".json" suffix picks the JSON syntax whatever the file is called.
      this.#facts = new TableDomainFacts(parseDomains(text, `${this.path} (system info).json`));
      this.#identity = identity(opened);
    } finally {
      closeSync(fd);
    }
    return this.#facts;
  }
}

function identity(stat: { ino: bigint; size: bigint; mtimeNs: bigint }): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeNs}`;
}
