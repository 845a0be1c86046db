// The lab's policy daemon reads domain facts from a file the admin rewrites on every change:
// one stat per request, read again only when the file was replaced, never a stale or half one.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/paths.ts";
import { SystemInfoFile } from "../../src/policy/system-info.ts";
import { SystemInfoPublisher } from "../../src/lab/system-info-publisher.ts";
import { Registry } from "../../src/lab/registry.ts";
import { parseLabConfig } from "../../src/lab/config.ts";

const dir = tempDir("qrx-system-info-");
afterAll(() => dir.remove());

function info(domains: Record<string, Record<string, unknown>>): string {
  return JSON.stringify({ domains });
}

/** As the publisher writes: aside, then renamed into place. */
function replace(path: string, text: string): void {
  writeFileSync(`${path}.new`, text);
  renameSync(`${path}.new`, path);
}

describe("SystemInfoFile", () => {
  test("reads the file once while it stays, and again when it is replaced", () => {
    const path = join(dir.path, "a.json");
    replace(path, info({ work: { tags: ["one"] } }));
    const file = new SystemInfoFile(path);
    const first = file.current();
    expect([...first.get("work")!.tags]).toEqual(["one"]);
    expect(file.current()).toBe(first); // same file: the parsed facts are reused
    replace(path, info({ work: { tags: ["two"] }, vault: {} }));
    const second = file.current();
    expect(second).not.toBe(first);
    expect([...second.get("work")!.tags]).toEqual(["two"]);
    expect(second.get("vault")).toBeDefined();
  });

  test("a missing or broken file throws (the request is denied), and recovers", () => {
    const path = join(dir.path, "b.json");
    const file = new SystemInfoFile(path);
    expect(() => file.current()).toThrow();
    replace(path, "{ not json");
    expect(() => file.current()).toThrow();
    replace(path, info({ work: {} }));
    expect(file.current().get("work")).toBeDefined();
  });
});

describe("the admin's system-info file", () => {
  const config = parseLabConfig(
    `[[domain]]\nname = "work"\ntags = ["a"]\n\n` +
      `[[domain]]\nname = "default-dvm"\ntype = "AppVM"\ntemplate_for_dispvms = true\n`,
    "test.toml",
  );

  test("follows every registry change: power state, new and removed DispVMs, preloading", () => {
    const path = join(dir.path, "lab", "system-info.json");
    mkdirSync(join(dir.path, "lab"), { recursive: true });
    const registry = new Registry(config);
    const publisher = new SystemInfoPublisher(path, () => {});
    registry.onChange(() => publisher.publish(registry.systemInfo()));
    publisher.publish(registry.systemInfo());
    const reader = new SystemInfoFile(path);
    const facts = () => reader.current();
    expect(facts().get("work")?.running).toBe(false);
    const work = registry.find("work")!;
    registry.setState(work, "Running");
    expect(facts().get("work")?.running).toBe(true);
    expect(work.runningSince).toBeGreaterThan(0);
    const disp = registry.addDisposable(registry.find("default-dvm")!);
    expect(facts().get(disp.name)).toBeDefined();
    registry.setPreloaded(disp, true);
    expect(facts().get(disp.name)).toBeUndefined(); // waiting in the pool: hidden
    registry.setPreloaded(disp, false);
    expect(facts().get(disp.name)).toBeDefined();
    registry.remove(disp);
    expect(facts().get(disp.name)).toBeUndefined();
    registry.setState(work, "Halted");
    expect(facts().get("work")?.running).toBe(false);
    expect(work.runningSince).toBe(0);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual(registry.systemInfo());
  });

  test("a failed write removes the file: the policy denies rather than use old facts", () => {
    const path = join(dir.path, "gone", "system-info.json"); // no such directory
    const logged: string[] = [];
    new SystemInfoPublisher(path, (line) => logged.push(line)).publish({ domains: {} });
    expect(existsSync(path)).toBe(false);
    expect(logged.join("\n")).toContain("calls are denied");
  });
});
