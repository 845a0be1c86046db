// The requested target a service in dom0 sees (§2.2 step 1, §5.5; issue 15 item 17), with our
// policy engine behind a real qrexec-daemon: called as `dom0` it is the name form
// (QREXEC_REQUESTED_TARGET_TYPE=name, QREXEC_REQUESTED_TARGET=dom0), as `@adminvm` the keyword
// form (QREXEC_REQUESTED_TARGET_KEYWORD=adminvm), whatever the policy made of the target.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { PolicySystem } from "../helpers/policy-system.ts";

let system: PolicySystem;

beforeAll(async () => {
  system = new PolicySystem("socket");
  system.domains('[domains.work]\npower_state = "Running"\n');
  const rules = ["test.Env * work dom0 allow", "test.Env * work @adminvm allow"];
  system.writePolicy("50-test.policy", `${rules.join("\n")}\n`);
  await system.startPolicyDaemon();
  await system.startVm(2, "work");
  const requested = "$QREXEC_REQUESTED_TARGET_TYPE|$QREXEC_REQUESTED_TARGET";
  system.service("dom0", "test.Env", `echo "${requested}|$QREXEC_REQUESTED_TARGET_KEYWORD"`);
});

afterAll(async () => {
  await system.stop();
});

describe("a service called in dom0", () => {
  test.each([
    ["dom0", "name|dom0|\n"],
    ["@adminvm", "keyword||adminvm\n"],
  ])("called as %s", async (target, expected) => {
    const result = await system.clientVm("work", [target, "test.Env"]);
    expect(result.stdout, `${result.stderr}\n${system.allLogs()}`).toBe(expected);
    expect(result.code).toBe(0);
  });
});
