// qrexec-client as a process. SIGSTOP freezes a call (issue 15 item 6): while the client is
// stopped nothing moves (no input reaches the service, no output reaches us); after SIGCONT the
// call goes on, and SIGTERM then ends it. A dom0 -> dom0 call execs the service, as upstream's
// does (§2.4), which is what makes that hold there. Real agents and daemons.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { procStat } from "../helpers/procfs.ts";
import { BIN, QrexecSystem, waitFor } from "../helpers/system.ts";

let system: QrexecSystem;

beforeAll(async () => {
  system = new QrexecSystem("shm");
  await system.startVm(3, "vault");
  system.service("vault", "test.Cat", "cat");
  // exec: a signal to the client's pid must reach the process that moves the data.
  system.service("dom0", "test.Cat", "exec cat");
  system.service("dom0", "test.Pid", "echo $$");
  const sessionLog = join(system.dir.path, "session.log");
  const status = '"${QRX_TEST_WAIT_STATUS:-0}"';
  const waiter = `echo "waited for $QREXEC_REMOTE_DOMAIN" >"${sessionLog}"; exit ${status}`;
  system.service("dom0", "qubes.WaitForSession", waiter);
  system.service("dom0", "test.Session", `cat "${sessionLog}"`);
  system.serviceConfig("dom0", "test.Session", "wait-for-session = true\n");
  const badInterpreter = join(system.dom0RpcDir, "test.BadInterpreter");
  writeFileSync(badInterpreter, "#!/nonexistent/interpreter\n", { mode: 0o755 });
});

afterAll(async () => {
  await system.stop();
});

function spawnClient(args: string[]) {
  return system.spawn(0, [join(BIN, "qrexec-client"), `--socket-dir=${system.socketDir}`, ...args]);
}

/** Collects a child's stdout as it arrives. */
function collect(stream: ReadableStream<Uint8Array>): { text: () => string } {
  let received = "";
  void (async () => {
    for await (const chunk of stream) received += new TextDecoder().decode(chunk);
  })();
  return { text: () => received };
}

describe.each([
  ["dom0 -> VM", ["-d", "vault", "DEFAULT:QUBESRPC test.Cat dom0"]],
  ["dom0 -> dom0", ["-d", "dom0", "DEFAULT:QUBESRPC test.Cat dom0 name dom0"]],
])("qrexec-client %s under SIGSTOP", (_name, args) => {
  test("nothing moves while stopped; after SIGCONT it does; SIGTERM ends the client", async () => {
    const client = spawnClient(args);
    const output = collect(client.stdout);
    client.stdin.write("one\n");
    client.stdin.flush();
    const what = `the first line back (logs: ${system.logs()})`;
    await waitFor(() => output.text() === "one\n", what, 20_000);

    client.kill("SIGSTOP");
    // Wait until the kernel reports the whole process stopped.
    await waitFor(() => procStat(client.pid)?.state === "T", "the client to stop");
    client.stdin.write("two\n");
    client.stdin.flush();
    await Bun.sleep(300);
    expect(output.text()).toBe("one\n");
    expect(client.exitCode).toBeNull();

    client.kill("SIGCONT");
    await waitFor(() => output.text() === "one\ntwo\n", "the second line after SIGCONT", 20_000);
    client.kill("SIGTERM");
    await client.exited;
    expect(client.signalCode ?? client.exitCode).toBe("SIGTERM");
  });
});

describe("qrexec-client dom0 -> dom0 execs the service", () => {
  test("the service runs as the client's own process", async () => {
    const client = spawnClient(["-d", "dom0", "DEFAULT:QUBESRPC test.Pid dom0 name dom0"]);
    const [stdout, code] = await Promise.all([new Response(client.stdout).text(), client.exited]);
    expect(code).toBe(0);
    expect(stdout).toBe(`${client.pid}\n`);
  });

  test("wait-for-session: qubes.WaitForSession runs first, for the source", async () => {
    const command = "DEFAULT:QUBESRPC test.Session work name dom0";
    const result = await system.client(["-d", "dom0", command]);
    expect(result.stdout, result.stderr).toBe("waited for work\n");
  });

  test("wait-for-session: a failure is logged (before the exec); the service runs", async () => {
    const command = "DEFAULT:QUBESRPC test.Session work name dom0";
    const client = join(BIN, "qrexec-client");
    const argv = [client, `--socket-dir=${system.socketDir}`, "-d", "dom0", command];
    const result = await system.run(0, argv, "", { QRX_TEST_WAIT_STATUS: "3" });
    expect(result.stdout, result.stderr).toBe("waited for work\n");
    expect(result.stderr).toMatch(/WaitForSession exited with 3; running the service anyway/);
    expect(result.code).toBe(0);
  });

  test("a service exec cannot find (a missing interpreter) is 127, with the reason", async () => {
    const command = "DEFAULT:QUBESRPC test.BadInterpreter dom0 name dom0";
    const result = await system.client(["-d", "dom0", command]);
    expect(result.code).toBe(127);
    expect(result.stderr).toMatch(/cannot run .*test\.BadInterpreter: .*ENOENT/);
  });
});
