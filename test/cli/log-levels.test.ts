// Log levels (src/log.ts) through the real programs: the default prints what it always printed,
// -v/QRX_LOG=debug adds detail, --quiet keeps warnings only, and qrx passes its level on to the
// processes it starts.
import { afterAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestLab } from "../helpers/lab.ts";
import { tempDir } from "../helpers/paths.ts";

const BIN = join(import.meta.dir, "..", "..", "bin");
const dir = tempDir("qrx-log-");
afterAll(() => dir.remove());
writeFileSync(join(dir.path, "30-test.policy"), "test.Add * work vault allow\n");
writeFileSync(join(dir.path, "domains.toml"), "[domains.work]\n[domains.vault]\n");

function policyExec(flags: string[], env: Record<string, string> = {}) {
  const argv = [
    join(BIN, "qrexec-policy-exec"),
    ...flags,
    "--policy-dir",
    dir.path,
    "--domains",
    join(dir.path, "domains.toml"),
  ];
  const base = { ...process.env } as Record<string, string>;
  delete base.QRX_LOG;
  const result = Bun.spawnSync([...argv, "--", "work", "vault", "test.Add"], {
    env: { ...base, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  // Timestamps and pids differ between runs; what is said does not.
  const lines = result.stderr
    .toString()
    .replace(/^\S+ qrexec-policy-exec\[\d+\]: /gm, "")
    .trimEnd()
    .split("\n");
  return {
    code: result.exitCode,
    stdout: result.stdout.toString(),
    lines: lines.filter((line) => line !== ""),
  };
}

const DECISION = "work -> vault test.Add+: allow to vault by 30-test.policy:1";
const REQUEST = "request: work -> vault test.Add";

test("the default prints the decision line and nothing more", () => {
  const result = policyExec([]);
  expect(result.code).toBe(0);
  expect(result.stdout).toContain("result=allow");
  expect(result.lines.map((line) => line.replace(/ by .*\//, " by "))).toEqual([DECISION]);
});

test("-v, --verbose and QRX_LOG=debug add the debug lines; the default ones stay", () => {
  for (const run of [
    policyExec(["-v"]),
    policyExec(["--verbose"]),
    policyExec([], { QRX_LOG: "debug" }),
  ]) {
    expect(run.code).toBe(0);
    expect(run.lines[0]).toBe(REQUEST);
    expect(run.lines.slice(1).map((line) => line.replace(/ by .*\//, " by "))).toEqual([DECISION]);
  }
});

test("--quiet and QRX_LOG=warn drop the info lines, not the answer", () => {
  for (const run of [
    policyExec(["--quiet"]),
    policyExec([], { QRX_LOG: "warn" }),
    policyExec(["-v", "--quiet"]),
  ]) {
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("result=allow\ntarget=vault\n");
    expect(run.lines).toEqual([]);
  }
});

test("a bad QRX_LOG is said once, and the default level is used", () => {
  const result = policyExec([], { QRX_LOG: "loud" });
  expect(result.code).toBe(0);
  expect(result.lines[0]).toBe('qrx: QRX_LOG must be debug, info or warn, not "loud"; using info');
  expect(result.lines.length).toBe(2);
});

test("qrx -v passes the level to the lab's programs; without it, no debug line", async () => {
  const agentLog = (lab: TestLab) => readFileSync(join(lab.dir, "logs", "work.agent.log"), "utf8");
  const quiet = new TestLab();
  const verbose = new TestLab();
  try {
    await quiet.up();
    await verbose.qrx(["-v", "lab", "up", "--dir", verbose.dir], { withDir: false });
    expect(agentLog(verbose)).toContain("qrexec-agent");
    expect(agentLog(verbose)).toMatch(/services from \S+, vchan transport shm/);
    expect(agentLog(quiet)).toContain("serving domain");
    expect(agentLog(quiet)).not.toContain("services from");
  } finally {
    await Promise.all([quiet.remove(), verbose.remove()]);
  }
}, 60_000);
