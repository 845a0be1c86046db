// running.json lets `qrx run` skip the admin service's status call; it must never vouch for a
// lab or a domain whose processes are not the ones it names.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LabStatus } from "../../src/lab/admin.ts";
import { LabLayout } from "../../src/lab/layout.ts";
import { knownRunning, writeRunning } from "../../src/lab/running-domains.ts";

function domain(
  name: string,
  id: number,
  state: string,
  agentPid: number | null,
  isolation = "none",
) {
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
    isolation,
  };
}

describe("running.json", () => {
  let dir: string;
  let layout: LabLayout;
  let agent: ReturnType<typeof Bun.spawn>;
  let program: ReturnType<typeof Bun.spawn>;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "qrx-running-"));
    layout = new LabLayout(dir);
    agent = Bun.spawn(["sleep", "60"]);
    program = Bun.spawn(["sleep", "60"]);
  });

  afterEach(async () => {
    for (const child of [agent, program]) child.kill("SIGKILL");
    await Promise.all([agent.exited, program.exited]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The lab as an admin (this test process) with `work`'s agent alive writes it; `vault`, an
   * isolated domain, has the same agent, this process as its init and `program`. */
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
        domain("vault", 2, "Running", agent.pid, "namespaces"),
        domain("personal", 3, "Halted", null),
      ],
    };
  }

  function write(): void {
    writeRunning(layout, status(), () => ({ init: process.pid, program: program.pid }));
  }

  function edit(change: (file: Record<string, any>) => void): void {
    const path = join(dir, "running.json");
    const file = JSON.parse(readFileSync(path, "utf8"));
    change(file);
    writeFileSync(path, JSON.stringify(file));
  }

  test("vouches for a domain while the admin and its agent are those it names", async () => {
    write();
    const lab = await knownRunning(layout, "work");
    expect(lab?.transport).toBe("shm");
    expect(lab?.domains.find((candidate) => candidate.name === "work")).toMatchObject({
      id: 1,
      state: "Running",
      agentPid: agent.pid,
      isolation: "none",
    });
  });

  test("names an isolated domain's processes while they are those it names", async () => {
    write();
    const lab = await knownRunning(layout, "vault");
    const vault = lab?.domains.find((candidate) => candidate.name === "vault");
    expect(vault?.enter).toEqual({ init: process.pid, program: program.pid });
    program.kill("SIGKILL");
    await program.exited;
    expect(await knownRunning(layout, "vault")).toBeNull();
    expect(await knownRunning(layout, "work")).not.toBeNull();
  });

  test("leaves a domain not running, or without an agent, to the admin", async () => {
    write();
    expect(await knownRunning(layout, "personal")).toBeNull();
    expect(await knownRunning(layout, "dom0")).toBeNull();
    expect(await knownRunning(layout, "nope")).toBeNull();
  });

  test("does not vouch once the agent is gone", async () => {
    write();
    agent.kill("SIGKILL");
    await agent.exited;
    expect(await knownRunning(layout, "work")).toBeNull();
  });

  test("does not vouch for a pid that is now another process (start time differs)", async () => {
    write();
    edit((file) => (file.admin[1] = "1"));
    expect(await knownRunning(layout, "work")).toBeNull();
    write();
    edit((file) => (file.domains[0].alive[0][1] = "1"));
    expect(await knownRunning(layout, "work")).toBeNull();
  });

  test("no file, or a damaged one, is no answer", async () => {
    expect(await knownRunning(layout, "work")).toBeNull();
    for (const text of ["{", "{}", '{"domains": [{"name": "work"}]}']) {
      writeFileSync(join(dir, "running.json"), text);
      expect(await knownRunning(layout, "work")).toBeNull();
    }
  });
});
