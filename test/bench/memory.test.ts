// `qrx bench memory`'s parts: a real default lab measured at rest, and the 20-VM lab definition.
import { describe, expect, test } from "bun:test";
import { measureLab, twentyDomainConfig } from "../../src/bench/memory.ts";
import { loadLabConfig } from "../../src/lab/config.ts";
import { tempDir } from "../helpers/paths.ts";

describe("qrx bench memory", () => {
  test("the default lab at rest: its six processes, RSS above PSS, both plausible", async () => {
    const row = await measureLab("memory-default-lab", undefined);
    expect(row).toMatchObject({ name: "memory-default-lab", domains: 3, processes: 6 });
    expect(row.pssMB).toBeGreaterThan(6);
    expect(row.rssMB).toBeGreaterThan(row.pssMB);
    expect(row.rssMB).toBeLessThan(6 * 1024);
  }, 60_000);

  test("the 20-VM lab definition is a valid lab of 20 running AppVMs", () => {
    const dir = tempDir();
    try {
      const config = loadLabConfig(twentyDomainConfig(dir.path));
      const names = Array.from({ length: 20 }, (_, i) => `vm${String(i + 1).padStart(2, "0")}`);
      expect(config.domains.map((domain) => domain.name)).toEqual(names);
      expect(config.domains.every((domain) => domain.klass === "AppVM" && domain.start)).toBe(true);
    } finally {
      dir.remove();
    }
  });
});
