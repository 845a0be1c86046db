// The conformance kit against our own qrexec-agent, qrexec-daemon and qrexec-client-vm (bin/):
// every case passes. Also the command line: JSON rows, --case, --list, exit status.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { CATALOGUE } from "../../src/conformance/catalogue.ts";
import { ROLES, type Row } from "../../src/conformance/types.ts";
import { BUN, failures, ROOT, run } from "./helpers.ts";

const PROGRAMS = {
  agent: "qrexec-agent",
  daemon: "qrexec-daemon",
  "client-vm": "qrexec-client-vm",
} as const;

describe("the conformance kit against our programs", () => {
  for (const role of ROLES) {
    test(`${role}: every case passes`, async () => {
      const rows = await run(role, join(ROOT, "bin", PROGRAMS[role]));
      expect(rows.map((row) => row.case)).toEqual(CATALOGUE[role].map((c) => c.name));
      expect(failures(rows)).toBe("");
      expect(rows.every((row) => row.result === "pass")).toBe(true);
    }, 120_000);
  }
});

describe("qrx conformance (command line)", () => {
  const cli = (args: string[]) =>
    Bun.spawn([BUN, join(import.meta.dir, "cli-entry.ts"), "conformance", ...args], {
      stdout: "pipe",
      stderr: "pipe",
      cwd: ROOT,
    });

  test("--json prints rows {case, role, result, expected, seen, ms}; 0: no failure", async () => {
    const child = cli([
      "--role",
      "agent",
      "--cmd",
      join(ROOT, "bin", "qrexec-agent"),
      "--json",
      "--case",
      "exec-service",
      "exit-code-127",
    ]);
    const [stdout, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
    const rows = JSON.parse(stdout) as Row[];
    expect(code).toBe(0);
    expect(rows.map((row) => [row.case, row.role, row.result])).toEqual([
      ["exec-service", "agent", "pass"],
      ["exit-code-127", "agent", "pass"],
    ]);
    for (const row of rows) {
      expect(typeof row.expected).toBe("string");
      expect(row.seen).toContain("EXIT_CODE");
      expect(row.ms).toBeGreaterThan(0);
    }
  }, 60_000);

  test("a failed case: exit 1, PASS/FAIL lines with expected and seen", async () => {
    const child = cli([
      "--role",
      "client-vm",
      "--cmd",
      "/bin/sh -c 'exit 0'",
      "--case",
      "trigger4",
    ]);
    const [stdout, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/FAIL  client-vm trigger4/);
    expect(stdout).toMatch(/expected: TRIGGER_SERVICE4/);
    expect(stdout).toMatch(/seen: +the client exit 0 without connecting/);
    expect(stdout).toMatch(/1 cases: 0 passed, 1 failed/);
  }, 60_000);

  test("usage errors exit 2: unknown case, missing --cmd, unknown role", async () => {
    for (const args of [
      ["--role", "agent", "--cmd", "x", "--case", "no-such-case"],
      ["--role", "agent"],
      ["--role", "vm", "--cmd", "x"],
    ]) {
      const child = cli(args);
      const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
      expect(code, stderr).not.toBe(0);
      expect(stderr.length).toBeGreaterThan(0);
    }
  });

  test("--list prints every role's catalogue", async () => {
    const child = cli(["--list", "--json"]);
    const rows = JSON.parse(await new Response(child.stdout).text()) as Array<{
      role: string;
      case: string;
      spec: string;
    }>;
    expect(rows.length).toBe(ROLES.reduce((sum, role) => sum + CATALOGUE[role].length, 0));
    expect(rows.every((row) => row.spec.startsWith("§"))).toBe(true);
  });
});
