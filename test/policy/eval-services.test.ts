// policy.EvalSimple and policy.EvalGUI (§11.3) served by the policy daemon: raw unix-socket
// clients write the service descriptor, then source\0target, half-close and read the answer.
import { Connection } from "../../src/io/connection.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ProgramAsker } from "../../src/policy/ask.ts";
import { PolicyDaemon } from "../../src/policy/daemon.ts";
import { parseEvalDescriptor, parseEvalNames } from "../../src/policy/eval-services.ts";
import { PolicyStore } from "../../src/policy/store.ts";
import { tempDir } from "../helpers/paths.ts";

/** Writes `data`, half-closes unless told not to, and returns everything read until close. */
async function exchange(path: string, data: Buffer | string, halfClose = true): Promise<string> {
  return Buffer.from(
    await Connection.exchange(path, typeof data === "string" ? data : new Uint8Array(data), {
      halfClose,
    }),
  ).toString("latin1");
}

const call = (service: string, caller: string, source: string, target: string) =>
  `policy.EvalX+${service} ${caller} name ${caller}\0${source}\0${target}`;

describe("parsers", () => {
  test.each([
    [
      "policy.EvalSimple+test.Echo+arg guivm keyword guivm",
      { ok: true, serviceAndArg: "test.Echo+arg", caller: "guivm" },
    ],
    ["policy.EvalSimple+test.Echo work", { ok: true, serviceAndArg: "test.Echo", caller: "work" }],
    ["policy.EvalSimple work", { ok: false }],
    ["policy.EvalSimple+ work", { ok: false }],
    ["policy.EvalSimple+test.Echo", { ok: false }],
  ])("descriptor %j", (text, expected) => {
    expect(parseEvalDescriptor(text)).toMatchObject(expected);
  });

  test.each([
    ["work\0vault", true],
    ["@default\0vault", true],
    [`${"a".repeat(31)}\0${"b".repeat(63)}`, true],
    [`${"a".repeat(32)}\0vault`, false],
    [`work\0${"b".repeat(64)}`, false],
    ["\0vault", false],
    ["work\0", false],
    ["work", false],
    ["work\0vault\0", false],
    ["work\0@dispvm:x", false],
    ["wo rk\0vault", false],
  ])("names %j -> ok %p", (text, ok) => {
    expect(parseEvalNames(Buffer.from(text, "latin1")).ok).toBe(ok);
  });
});

describe("policy.EvalSimple / policy.EvalGUI sockets", () => {
  const dir = tempDir("qrx-peval-");
  const policyDir = join(dir.path, "policy.d");
  const domainsFile = join(dir.path, "domains.json");
  const simple = join(dir.path, "policy.EvalSimple");
  const gui = join(dir.path, "policy.EvalGUI");
  const log: string[] = [];
  let store: PolicyStore;
  let daemon: PolicyDaemon;

  beforeAll(() => {
    mkdirSync(policyDir);
    writeFileSync(
      domainsFile,
      JSON.stringify({
        domains: {
          sys_gui: { power_state: "Running" },
          work: { power_state: "Running", tags: ["guivm-sys_gui"] },
          vault: { power_state: "Running", tags: ["guivm-sys_gui"] },
          personal: { power_state: "Running" },
        },
      }),
    );
    writeFileSync(
      join(policyDir, "50-test.policy"),
      [
        "test.Echo * work vault allow",
        "test.Echo * work personal allow",
        "test.Echo * personal vault allow",
        "test.Ask * work @anyvm ask default_target=vault",
        "test.AskAdmin * work @adminvm ask",
        "* * @anyvm @anyvm deny",
        "",
      ].join("\n"),
    );
    store = new PolicyStore(
      { dirs: [policyDir], legacyDir: join(dir.path, "legacy"), domainsFile },
      { log: (line) => log.push(line) },
    );
    // The asker would say "personal" (allow): an EvalX answer must never come from it.
    daemon = new PolicyDaemon({
      socketPath: join(dir.path, "policy.sock"),
      store,
      asker: new ProgramAsker("cat >/dev/null; echo personal"),
      log: (line) => log.push(line),
      evalSimpleSocket: simple,
      evalGuiSocket: gui,
    });
    daemon.start();
  });

  afterAll(() => {
    daemon.stop();
    store.close();
    dir.remove();
  });

  test("EvalSimple: allow", async () => {
    expect(await exchange(simple, call("test.Echo", "personal", "work", "vault"))).toBe(
      "result=allow\n",
    );
  });

  test("EvalSimple: deny", async () => {
    expect(await exchange(simple, call("test.Other", "personal", "work", "vault"))).toBe(
      "result=deny\n",
    );
    expect(await exchange(simple, call("test.Echo", "personal", "vault", "work"))).toBe(
      "result=deny\n",
    );
  });

  test("EvalSimple: ask is settled with assume_yes_for_ask (the intended target)", async () => {
    expect(await exchange(simple, call("test.Ask", "personal", "work", "vault"))).toBe(
      "result=allow\n",
    );
    // The intended target is not among the choices (@anyvm excludes dom0): deny, not the asker's
    // "personal".
    expect(await exchange(simple, call("test.Ask", "personal", "work", "dom0"))).toBe(
      "result=deny\n",
    );
  });

  test("EvalSimple: assume_yes_for_ask compares the intended target literally", async () => {
    expect(await exchange(simple, call("test.AskAdmin", "personal", "work", "dom0"))).toBe(
      "result=allow\n",
    );
    // The only choice is dom0; the keyword is another spelling, which upstream does not accept.
    expect(await exchange(simple, call("test.AskAdmin", "personal", "work", "@adminvm"))).toBe(
      "result=deny\n",
    );
  });

  test("the service argument reaches the policy", async () => {
    writeFileSync(join(policyDir, "40-arg.policy"), "test.Arg +yes work vault allow\n");
    store.reload();
    expect(await exchange(simple, call("test.Arg+yes", "personal", "work", "vault"))).toBe(
      "result=allow\n",
    );
    expect(await exchange(simple, call("test.Arg+no", "personal", "work", "vault"))).toBe(
      "result=deny\n",
    );
  });

  test("exactly 96 bytes answer without a half-close (and are refused: too long)", async () => {
    const body = `${"a".repeat(31)}\0${"b".repeat(64)}`;
    expect(body.length).toBe(96);
    expect(await exchange(simple, `policy.EvalSimple+test.Echo personal\0${body}`, false)).toBe("");
  });

  test.each([
    ["@dispvm:x target", call("test.Echo", "personal", "work", "@dispvm:x")],
    ["32-byte source", call("test.Echo", "personal", "a".repeat(32), "vault")],
    ["64-byte target", call("test.Echo", "personal", "work", "b".repeat(64))],
    ["over 96 bytes", call("test.Echo", "personal", "work", "vault") + "x".repeat(100)],
    ["empty source", call("test.Echo", "personal", "", "vault")],
    ["no target", "policy.EvalSimple+test.Echo personal\0work"],
    ["bad character", call("test.Echo", "personal", "wo/rk", "vault")],
    ["descriptor without a service", "policy.EvalSimple personal\0work\0vault"],
    ["no descriptor end", "policy.EvalSimple+test.Echo personal"],
  ])("EvalSimple: %s -> no answer", async (_what, data) => {
    expect(await exchange(simple, data)).toBe("");
  });

  test("EvalGUI: both qubes tagged guivm-<caller> -> evaluated", async () => {
    expect(await exchange(gui, call("test.Echo", "sys_gui", "work", "vault"))).toBe(
      "result=allow\n",
    );
    expect(await exchange(gui, call("test.Other", "sys_gui", "work", "vault"))).toBe(
      "result=deny\n",
    );
    expect(await exchange(gui, call("test.Ask", "sys_gui", "work", "vault"))).toBe(
      "result=allow\n",
    );
  });

  test("EvalGUI: an untagged source or target, or another caller -> no answer", async () => {
    // Each of these is allowed by the policy, so only the tag check can make them silent.
    expect(await exchange(simple, call("test.Echo", "sys_gui", "work", "personal"))).toBe(
      "result=allow\n",
    );
    expect(await exchange(simple, call("test.Echo", "sys_gui", "personal", "vault"))).toBe(
      "result=allow\n",
    );
    // target untagged
    expect(await exchange(gui, call("test.Echo", "sys_gui", "work", "personal"))).toBe("");
    // source untagged
    expect(await exchange(gui, call("test.Echo", "sys_gui", "personal", "vault"))).toBe("");
    // not their GUI VM
    expect(await exchange(gui, call("test.Echo", "personal", "work", "vault"))).toBe("");
    expect(await exchange(gui, call("test.Echo", "sys_gui", "work", "nonexistent"))).toBe("");
    expect(log.join("\n")).toContain("personal has no tag guivm-sys_gui");
  });
});
