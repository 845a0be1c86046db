// running.json lets `qrx run` skip the admin service's status call; it must never vouch for a
// lab or a domain whose processes are not the ones it names.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LabStatus } from "../../src/lab/admin.ts";
import { LabLayout } from "../../src/lab/layout.ts";
import { knownRunning, writeRunning } from "../../src/lab/running-domains.ts";

function domain(name: string, id: number, state: string, agentPid: number | null) {
  return {
    name,
    id,
    klass: "AppVM",
    templateForDispvms: false,
    state,
    template: null,
    agentPid,
    daemonPid: null,
    runningSince: 0,
    calls: 0,
    restarts: 0,
    preloaded: false,
    isolation: "none",
  };
}

describe("running.json", () => {
  let dir: string;
  let layout: LabLayout;
  let agent: ReturnType<typeof Bun.spawn>;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "qrx-running-"));
    layout = new LabLayout(dir);
    agent = Bun.spawn(["sleep", "60"]);
  });

  afterEach(async () => {
    agent.kill("SIGKILL");
    await agent.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  /** The lab as an admin (this test process) with `work`'s agent alive writes it. */
  function status(): LabStatus {
    return {
      dir,
      config: "",
      transport: "shm",
      isolation: "none",
      adminPid: process.pid,
      policyPid: null,
      startedAt: 0,
      ready: true,
      disposablesCreated: 0,
      domains: [
        domain("dom0", 0, "Running", null),
        domain("work", 1, "Running", agent.pid),
        domain("personal", 3, "Halted", null),
      ],
    };
  }

  function edit(change: (file: Record<string, any>) => void): void {
    const path = join(dir, "running.json");
    const file = JSON.parse(readFileSync(path, "utf8"));
    change(file);
    writeFileSync(path, JSON.stringify(file));
  }

  test("vouches for a running domain while the admin and its agent are those it names", () => {
    writeRunning(layout, status());
    expect(knownRunning(layout, "work")).toMatchObject({
      transport: "shm",
      domains: [{ name: "work", id: 1, state: "Running", agentPid: agent.pid, isolation: "none" }],
    });
  });

  test("leaves a domain not running, or without an agent, to the admin", () => {
    writeRunning(layout, status());
    expect(knownRunning(layout, "personal")).toBeNull();
    expect(knownRunning(layout, "dom0")).toBeNull();
    expect(knownRunning(layout, "nope")).toBeNull();
  });

  test("does not vouch once the agent is gone", async () => {
    writeRunning(layout, status());
    agent.kill("SIGKILL");
    await agent.exited;
    expect(knownRunning(layout, "work")).toBeNull();
  });

  test("does not vouch for a pid that is now another process (start time differs)", () => {
    writeRunning(layout, status());
    edit((file) => (file.adminStart = "1"));
    expect(knownRunning(layout, "work")).toBeNull();
    writeRunning(layout, status());
    edit((file) => (file.domains[0].agentStart = "1"));
    expect(knownRunning(layout, "work")).toBeNull();
  });

  test("no file, or a damaged one, is no answer", () => {
    expect(knownRunning(layout, "work")).toBeNull();
    writeFileSync(join(dir, "running.json"), "{");
    expect(knownRunning(layout, "work")).toBeNull();
  });
});
