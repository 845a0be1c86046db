import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function nativeLibraryPathForTests(): string {
  return (
    process.env.QRX_NATIVE_LIB || join(import.meta.dir, "..", "..", "zig-out", "lib", "libqrx.so")
  );
}

/** A fresh directory under /tmp (short: unix socket paths must stay under 108 bytes). */
export function tempDir(prefix = "qrx-test-"): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
