// Preloaded DisposableVMs (issue 17 target 4): a template with preload_dispvm = 1 keeps one
// DispVM running ahead of `$dispvm` calls; a call gets it (no start on its path) and the next is
// preloaded at once. Until handed out it is not the policy's to see: a call to it by name is
// refused. Real lab, through bin/qrx.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parseLabConfig } from "../../src/lab/config.ts";
import type { DomainStatus } from "../../src/lab/admin.ts";
import { processesMentioning, TestLab } from "../helpers/lab.ts";
import { waitFor } from "../helpers/system.ts";

const CONFIG = `default_dispvm = "dvm"
policy = """
test.Whoami * work @dispvm allow
test.Whoami * @anyvm @anyvm allow
"""
[[domain]]
name = "work"
[[domain]]
name = "dvm"
type = "DispVMTemplate"
start = false
preload_dispvm = 1
`;

let lab: TestLab;
beforeAll(async () => {
  lab = new TestLab();
  await lab.up(lab.config(CONFIG));
});
afterAll(async () => {
  await lab.remove();
});

async function preloaded(): Promise<DomainStatus[]> {
  const status = await lab.status();
  return status.domains.filter((domain) => domain.preloaded && domain.state === "Running");
}

/** Waits for the one preloaded DispVM (other than `not`) and returns it. */
async function nextPreloaded(not?: string): Promise<DomainStatus> {
  let found: DomainStatus[] = [];
  const check = async () => {
    found = (await preloaded()).filter((domain) => domain.name !== not);
    return found.length === 1;
  };
  await waitFor(check, () => `one preloaded DispVM, not ${JSON.stringify(found)}`, 30_000);
  return found[0]!;
}

describe("preloaded DisposableVMs", () => {
  test("a $dispvm call gets the preloaded one; the next is preloaded after", async () => {
    const first = await nextPreloaded();
    expect(first).toMatchObject({ klass: "DispVM", template: "dvm" });
    const created = (await lab.status()).disposablesCreated;
    const call = await lab.run("work", ["qrexec-client-vm", "$dispvm", "test.Whoami"]);
    expect(call).toEqual({ code: 0, stdout: `${first.name}\n`, stderr: "" });
    const second = await nextPreloaded(first.name);
    expect(second.name).not.toBe(first.name);
    // The used one is destroyed after its call, as any DispVM.
    const gone = () => !existsSync(join(lab.dir, "domains", first.name));
    await waitFor(gone, `${first.name} destroyed`);
    expect((await lab.status()).disposablesCreated).toBe(created + 1);
  }, 60_000);

  test("a preloaded DispVM cannot be called by name before a call took it", async () => {
    const waiting = await nextPreloaded();
    const call = await lab.run("work", ["qrexec-client-vm", waiting.name, "test.Whoami"]);
    expect(call.code).toBe(126);
    expect(call.stdout).toBe("");
    // Still unspoiled: the next $dispvm call gets it.
    const mine = await lab.run("work", ["qrexec-client-vm", "$dispvm", "test.Whoami"]);
    expect(mine).toEqual({ code: 0, stdout: `${waiting.name}\n`, stderr: "" });
  }, 60_000);

  test("lab down takes the preloaded ones too", async () => {
    await nextPreloaded();
    await lab.down();
    expect(processesMentioning(lab.dir)).toEqual([]);
    const left = readdirSync(join(lab.dir, "domains")).filter((name) => name.startsWith("disp"));
    expect(left).toEqual([]);
  }, 60_000);
});

describe("preload_dispvm in a lab definition", () => {
  test("only on DispVM templates, 0 to 8", () => {
    const base = '[[domain]]\nname = "t"\ntype = "DispVMTemplate"\n';
    const preload = (text: string) => parseLabConfig(text, "/l.toml").domains[0]!.preloadDispvm;
    expect(preload(`${base}preload_dispvm = 2\n`)).toBe(2);
    expect(preload(base)).toBe(0);
    for (const bad of ["9", "-1", "1.5", '"1"']) {
      const range = /preload_dispvm must be a whole number from 0 to 8/;
      expect(() => preload(`${base}preload_dispvm = ${bad}\n`)).toThrow(range);
    }
    const appVm = '[[domain]]\nname = "a"\npreload_dispvm = 1\n';
    expect(() => preload(appVm)).toThrow(/preload_dispvm is for DisposableVM templates/);
  });
});
