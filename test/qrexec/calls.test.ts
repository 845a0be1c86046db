// Every call flow through real agents, daemons and clients (bin/), on both vchan transports.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { QrexecSystem, type Transport } from "../helpers/system.ts";

const TRANSPORTS: Transport[] = ["shm", "socket"];

describe.each(TRANSPORTS)("qrexec calls over %s", (transport) => {
  let system: QrexecSystem;

  beforeAll(async () => {
    system = new QrexecSystem(transport);
    await system.startVm(2, "work");
    await system.startVm(3, "vault");
    system.service("vault", "test.Add", "read a b; echo $((a+b))");
    system.service("vault", "test.Exit", 'cat >/dev/null; exit "$1"');
    system.service("vault", "test.Kill", "kill -9 $$");
    system.service(
      "vault",
      "test.Env",
      'echo "$QREXEC_REMOTE_DOMAIN|$QREXEC_SERVICE_FULL_NAME|${QREXEC_SERVICE_ARGUMENT-unset}|$*"',
    );
    system.service("work", "test.Echo", "cat");
    system.service(
      "dom0",
      "test.Dom0Env",
      'echo "$QREXEC_REMOTE_DOMAIN|$QREXEC_SERVICE_FULL_NAME|$QREXEC_REQUESTED_TARGET_TYPE|' +
        '$QREXEC_REQUESTED_TARGET$QREXEC_REQUESTED_TARGET_KEYWORD"; cat',
    );
    system.policy(
      "test.Deny* * * deny",
      "test.Ghost* work * allow ghost",
      "test.Redirect* work * allow vault",
      "test.Dom0Env* work @adminvm allow dom0",
      "test.Dom0Env* work dom0 allow dom0",
      "* work vault allow",
      "* vault work allow",
    );
  });

  afterAll(async () => {
    await system.stop();
  });

  function explain(result: { code: number; stderr: string }): string {
    return `exit ${result.code}, stderr: ${result.stderr}\n${system.logs()}`;
  }

  test("VM -> VM: test.Add with a local program (the design notes' example)", async () => {
    const client = join(system.dir.path, "add-client");
    writeFileSync(client, "#!/bin/sh\necho $1 $2\nexec cat >&$SAVED_FD_1\n", { mode: 0o755 });
    const result = await system.clientVm("work", ["vault", "test.Add", client, "11", "22"]);
    expect(result.stdout, explain(result)).toBe("33\n");
    expect(result.code).toBe(0);
  });

  test("VM -> VM: stdin and stdout of qrexec-client-vm are the service's", async () => {
    const result = await system.clientVm("work", ["vault", "test.Add"], "40 2\n");
    expect(result.stdout, explain(result)).toBe("42\n");
    expect(result.code).toBe(0);
  });

  test("the service environment and argument", async () => {
    const result = await system.clientVm("work", ["vault", "test.Env+some-arg"]);
    expect(result.stdout, explain(result)).toBe("work|test.Env+some-arg|some-arg|some-arg\n");
    // The daemon appends '+' to a service without an argument (§2.1 step 4): the argument is set,
    // empty.
    const plain = await system.clientVm("work", ["vault", "test.Env"]);
    expect(plain.stdout, explain(plain)).toBe("work|test.Env+||\n");
    // A command sent as is (dom0 -> VM) keeps its descriptor: no argument at all.
    const direct = await system.client(["-d", "vault", "DEFAULT:QUBESRPC test.Env dom0"]);
    expect(direct.stdout, explain(direct)).toBe("dom0|test.Env|unset|\n");
  });

  // The calling daemon keeps a connection to the target's daemon greeted for its next call
  // (src/daemon/spare-connections.ts): a target daemon that restarted in between closed it.
  test("VM -> VM calls go on across a restart of the target's daemon", async () => {
    for (let round = 0; round < 2; round++) {
      for (const input of ["1 2\n", "3 4\n"]) {
        const result = await system.clientVm("work", ["vault", "test.Add"], input);
        expect(result.code, explain(result)).toBe(0);
      }
      if (round === 0) await system.restartDaemon("vault");
    }
  });

  test("a denied call: 126 and exactly 'Request refused'", async () => {
    const result = await system.clientVm("work", ["vault", "test.Deny"]);
    expect(result.code, explain(result)).toBe(126);
    expect(result.stderr).toBe("Request refused\n");
  });

  test("a call allowed to a target without a daemon looks refused (§2.1 step 9)", async () => {
    const result = await system.clientVm("work", ["anywhere", "test.Ghost"]);
    expect(result.code, explain(result)).toBe(126);
    expect(result.stderr).toBe("Request refused\n");
  });

  test("the policy may redirect the call to another target", async () => {
    system.service("vault", "test.Redirect", "echo redirected to vault");
    const result = await system.clientVm("work", ["@default", "test.Redirect"]);
    expect(result.stdout, explain(result)).toBe("redirected to vault\n");
  });

  test("an unknown service: 127", async () => {
    const result = await system.clientVm("work", ["vault", "test.Missing"]);
    expect(result.code, explain(result)).toBe(127);
  });

  test("the service's exit status, and SIGKILL as 137", async () => {
    const exit42 = await system.clientVm("work", ["vault", "test.Exit+42"]);
    expect(exit42.code, explain(exit42)).toBe(42);
    const killed = await system.clientVm("work", ["vault", "test.Kill"]);
    expect(killed.code, explain(killed)).toBe(137);
  });

  test("local program status when the remote one is 0, the remote one otherwise", async () => {
    const localFails = await system.clientVm("work", [
      "vault",
      "test.Exit+0",
      "/bin/sh",
      "-c",
      "exit 7",
    ]);
    expect(localFails.code, explain(localFails)).toBe(7);
    const bothFail = await system.clientVm("work", [
      "vault",
      "test.Exit+5",
      "/bin/sh",
      "-c",
      "exit 7",
    ]);
    expect(bothFail.code, explain(bothFail)).toBe(5);
  });

  test("VM -> dom0 by name and by keyword", async () => {
    const byName = await system.clientVm("work", ["dom0", "test.Dom0Env"], "in\n");
    expect(byName.stdout, explain(byName)).toBe("work|test.Dom0Env+|name|dom0\nin\n");
    expect(byName.code).toBe(0);
    const byKeyword = await system.clientVm("work", ["@adminvm", "test.Dom0Env+x"], "");
    expect(byKeyword.stdout, explain(byKeyword)).toBe("work|test.Dom0Env+x|keyword|adminvm\n");
  });

  test("dom0 -> VM: a service and a shell command", async () => {
    const service = await system.client(["-d", "vault", "DEFAULT:QUBESRPC test.Add dom0"], "1 2\n");
    expect(service.stdout, explain(service)).toBe("3\n");
    expect(service.code).toBe(0);
    const shell = await system.client(["-d", "work", "user:echo from-shell; exit 3"]);
    expect(shell.stdout, explain(shell)).toBe("from-shell\n");
    expect(shell.code).toBe(3);
  });

  test("dom0 -> dom0 runs the service directly", async () => {
    const result = await system.client(
      ["-d", "dom0", "DEFAULT:QUBESRPC test.Dom0Env dom0 name dom0"],
      "x\n",
    );
    expect(result.stdout, explain(result)).toBe("dom0|test.Dom0Env|name|dom0\nx\n");
    expect(result.code).toBe(0);
  });
});
