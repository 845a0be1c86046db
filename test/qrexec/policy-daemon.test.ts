// Our policy, served to a real qrexec-daemon both ways: over the policy socket by
// bin/qrexec-policy-daemon, and as --policy-program by bin/qrexec-policy-exec. Real agents,
// daemons and clients; the calls go work -> vault (domains 2 and 3).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PolicySystem, type PolicyMode } from "../helpers/policy-system.ts";
import { waitFor } from "../helpers/system.ts";

const DOMAINS = `
[domains.work]
power_state = "Running"
default_dispvm = "default-dvm"
[domains.vault]
power_state = "Running"
[domains.personal]
[domains.default-dvm]
template_for_dispvms = true
`;

const POLICY = `# test policy
test.Echo    *  work  vault      allow
test.Deny    *  work  @anyvm     deny
test.Redirect * work  @anyvm     allow target=vault
test.Ask     *  work  @anyvm     ask default_target=vault
test.AskNo   *  work  @anyvm     ask
test.Arg     +yes work vault     allow
-dash        *  work  vault      allow
*            *  @anyvm @anyvm    deny
`;

const MODES: PolicyMode[] = ["socket", "program"];

describe.each(MODES)("qrexec-daemon with our policy over the %s interface", (mode) => {
  let system: PolicySystem;
  let askLog: string;

  beforeAll(async () => {
    system = new PolicySystem(mode);
    system.domains(DOMAINS);
    system.writePolicy("50-test.policy", POLICY);
    askLog = join(system.dir.path, "ask.log");
    // Answers test.Ask with vault after recording the question; denies everything else.
    system.setAskProgram(
      `cat > ${askLog}.json; echo ` +
        `"$QRX_ASK_SOURCE|$QRX_ASK_SERVICE|$QRX_ASK_TARGETS|$QRX_ASK_DEFAULT_TARGET" >> ${askLog}
case $QRX_ASK_SERVICE in test.Ask) echo vault ;; *) ;; esac`,
    );
    if (mode === "socket") await system.startPolicyDaemon();
    await system.startVm(2, "work");
    await system.startVm(3, "vault");
    for (const service of [
      "test.Echo",
      "test.Redirect",
      "test.Ask",
      "test.AskNo",
      "test.Deny",
      "test.Arg",
      "-dash",
    ]) {
      system.service(
        "vault",
        service,
        `echo "vault $QREXEC_SERVICE_FULL_NAME from $QREXEC_REMOTE_DOMAIN"`,
      );
    }
  });

  afterAll(async () => {
    await system.stop();
  });

  const why = (result: { code: number; stderr: string }) =>
    `exit ${result.code}, stderr: ${result.stderr}\n${system.allLogs()}`;
  /** Where the decisions are logged: the policy daemon's log, or (program) the qrexec-daemon's. */
  const decisionLog = () =>
    mode === "socket" ? system.policyDaemonLog() : system.daemonLog("work");

  test("allow, with the rule's file:line in the log", async () => {
    const result = await system.clientVm("work", ["vault", "test.Echo"]);
    expect(result.stdout, why(result)).toBe("vault test.Echo+ from work\n");
    expect(result.code).toBe(0);
    expect(decisionLog()).toContain(
      `work -> vault test.Echo+: allow to vault by ${join(system.policyDir, "50-test.policy")}:2`,
    );
  });

  test("deny", async () => {
    const result = await system.clientVm("work", ["vault", "test.Deny"]);
    expect(result.code, why(result)).toBe(126);
    expect(result.stderr).toContain("Request refused");
    expect(decisionLog()).toContain(
      `deny (denied by ${join(system.policyDir, "50-test.policy")}:3)`,
    );
  });

  test("no matching rule and an unknown source's argument deny", async () => {
    const other = await system.clientVm("work", ["vault", "test.Arg+no"]);
    expect(other.code, why(other)).toBe(126);
    const yes = await system.clientVm("work", ["vault", "test.Arg+yes"]);
    expect(yes.stdout, why(yes)).toBe("vault test.Arg+yes from work\n");
  });

  test("a service whose name starts with '-' (the program reads it after the `--`)", async () => {
    const result = await system.clientVm("work", ["vault", "-dash"]);
    expect(result.stdout, why(result)).toBe("vault -dash+ from work\n");
    expect(result.code).toBe(0);
  });

  test("redirect: a call to personal goes to vault", async () => {
    const result = await system.clientVm("work", ["personal", "test.Redirect"]);
    expect(result.stdout, why(result)).toBe("vault test.Redirect+ from work\n");
    expect(result.code).toBe(0);
  });

  test("ask answered by the ask program", async () => {
    const result = await system.clientVm("work", ["personal", "test.Ask"]);
    expect(result.stdout, why(result)).toBe("vault test.Ask+ from work\n");
    expect(readFileSync(askLog, "utf8")).toContain(
      "work|test.Ask|@dispvm:default-dvm default-dvm personal vault|vault",
    );
    const question = JSON.parse(readFileSync(`${askLog}.json`, "utf8"));
    expect(question).toMatchObject({
      source: "work",
      service: "test.Ask",
      argument: "+",
      targets: ["@dispvm:default-dvm", "default-dvm", "personal", "vault"],
      default_target: "vault",
      intended_target: "personal",
    });
    expect(question.rule).toBe(`${join(system.policyDir, "50-test.policy")}:5`);
  });

  test("ask the program denies (empty answer) is refused", async () => {
    const result = await system.clientVm("work", ["vault", "test.AskNo"]);
    expect(result.code, why(result)).toBe(126);
    expect(decisionLog()).toContain("ask answered: work -> vault test.AskNo+: deny (ask program");
  });

  test("a changed file is used next call; a broken one denies, file:line in the log", async () => {
    const file = system.writePolicy("40-override.policy", "test.Echo * work vault deny\n");
    if (mode === "socket")
      await waitFor(
        () => system.policyDaemonLog().includes("policy reloaded: 9 rules"),
        "the reload",
      );
    const denied = await system.clientVm("work", ["vault", "test.Echo"]);
    expect(denied.code, why(denied)).toBe(126);

    system.writePolicy("40-override.policy", "test.Echo * work\n");
    if (mode === "socket")
      await waitFor(
        () => system.policyDaemonLog().includes(`policy error: ${file}:1: wrong number of fields`),
        "the broken reload",
      );
    const broken = await system.clientVm("work", ["vault", "test.Echo"]);
    expect(broken.code, why(broken)).toBe(126);
    await waitFor(
      () =>
        decisionLog().includes(`so every call is denied; first: ${file}:1: wrong number of fields`),
      "the denial's log line",
    );

    system.writePolicy("40-override.policy", "# fixed\n");
    if (mode === "socket")
      await waitFor(
        () => system.policyDaemonLog().split("policy reloaded: 8 rules").length > 1,
        "the fixed reload",
      );
    const fixed = await system.clientVm("work", ["vault", "test.Echo"]);
    expect(fixed.stdout, why(fixed)).toBe("vault test.Echo+ from work\n");
  });
});
