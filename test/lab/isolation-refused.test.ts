// How `qrx lab up` answers a request for isolation it cannot honour: a clear error before
// anything starts, and an unisolated lab only when asked for one.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { TestLab } from "../helpers/lab.ts";

describe("asking for isolation", () => {
  test("a bad --isolation, or the socket transport, is refused before it starts", async () => {
    const other = new TestLab();
    try {
      const bad = await other.qrx(["lab", "up", "--isolation", "vm"]);
      expect(bad).toMatchObject({
        code: 2,
        stderr: "qrx: --isolation must be namespaces or none, not 'vm'\n",
      });
      const socket = await other.qrx([
        "lab",
        "up",
        "--config",
        other.config('transport = "socket"\n'),
      ]);
      expect(socket.code).toBe(1);
      expect(socket.stderr).toContain('transport "socket" cannot be isolated');
      expect(socket.stderr).toContain("--isolation none");
      expect(existsSync(join(other.dir, "admin.pid"))).toBe(false);
    } finally {
      other.root.remove();
    }
  });

  test("without what isolation needs: lab up says what; unisolated only when asked", async () => {
    const other = new TestLab();
    try {
      // Every program of the host but unshare.
      const bin = join(other.root.path, "bin");
      mkdirSync(bin);
      for (const dir of ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"]) {
        if (!existsSync(dir)) continue;
        for (const name of readdirSync(dir)) {
          if (name !== "unshare" && !existsSync(join(bin, name)))
            symlinkSync(join(dir, name), join(bin, name));
        }
      }
      const env = { PATH: bin };
      const refused = await other.qrx(["lab", "up"], { env });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        "cannot isolate the lab's domains: missing programs: unshare",
      );
      expect(refused.stderr).toContain("--isolation none");
      const asked = await other.qrx(["lab", "up", "--isolation", "none"], { env });
      expect(asked.code).toBe(0);
      expect(asked.stdout).toContain("isolation none");
    } finally {
      await other.remove();
    }
  }, 60_000);
});
