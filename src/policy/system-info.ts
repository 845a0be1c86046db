// Domain facts asked live from qubesd's internal.GetSystemInfo (§1, §11.1), as upstream's policy
// daemon does for every request. The lab's admin service answers it; a domains file is the
// static alternative.

import { qubesdCallText } from "../admin/qubesd.ts";
import { TableDomainFacts } from "./domains.ts";
import { parseDomains } from "./domains-file.ts";

export async function fetchSystemInfo(socketPath: string): Promise<TableDomainFacts> {
  const text = await qubesdCallText(socketPath, "internal.GetSystemInfo", "dom0");
  // The reply is GetSystemInfo's JSON; the ".json" name picks the JSON syntax.
  return new TableDomainFacts(parseDomains(text, `${socketPath} (internal.GetSystemInfo).json`));
}
