import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A fresh directory in `base`, by default under /tmp (short: unix socket paths must stay under
 * 108 bytes).
 */
export function tempDir(
  prefix = "qrx-test-",
  base = tmpdir(),
): { path: string; remove: () => void } {
  const path = mkdtempSync(join(base, prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
