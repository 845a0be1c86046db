// The MirageOS peer profile (qrexec-agent/qrexec-client-vm --peer-profile=mirage, spec §14):
// calls into and out of a mirage-profile domain through our real daemons and clients, both vchan
// transports; the 1 KiB control ring (oversize names refused before sending); the known
// mirage-qubes 2.0 wire bugs, reproduced with QRX_MIRAGE_BUGS, reported as peer protocol errors.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { QrexecSystem, waitFor, type Transport } from "../helpers/system.ts";

const TRANSPORTS: Transport[] = ["shm", "socket"];
setDefaultTimeout(60_000);
const MIRAGE = ["--peer-profile=mirage"];
const BIG = 200_000;
const CHUNK_BUG = /peer protocol error: chunk header carries the total remaining length \(mirage-qubes 2\.0 bug\)/;

describe.each(TRANSPORTS)("mirage peer profile over %s", (transport) => {
  let system: QrexecSystem;

  beforeAll(async () => {
    system = new QrexecSystem(transport);
    await system.startVm(2, "work");
    // Two mirage-profile domains: one faithful apart from its ring sizes, one with both bugs.
    await system.startVm(4, "mirage", { agentArgs: MIRAGE });
    await system.startVm(5, "buggy", { agentArgs: MIRAGE, agentEnv: { QRX_MIRAGE_BUGS: "chunk-length,trigger3-ident" } });
    for (const vm of ["work", "mirage", "buggy"]) {
      system.service(vm, "test.Echo", "cat");
      system.service(vm, "test.Add", "read a b; echo $((a+b))");
      system.service(vm, "test.Big", `head -c ${BIG} /dev/zero | tr '\\0' x; echo done >&2`);
      system.service(vm, "test.Count", "wc -c");
      system.service(vm, "test.Exit3", "cat >/dev/null; echo bye >&2; exit 3");
    }
    system.policy("* * * allow");
  });

  afterAll(async () => {
    await system.stop();
  });

  function explain(result: { code: number; stderr: string }): string {
    return `exit ${result.code}, stderr: ${result.stderr}\n${system.logs()}`;
  }

  test("the mirage agent says HELLO 3 and its daemon runs the control channel at 3", async () => {
    await waitFor(() => /protocol 3/.test(system.logOf("agent:mirage")), "the mirage agent's dom0 connection");
    expect(system.logOf("agent:mirage")).toMatch(/as a mirage peer/);
    expect(system.logOf("agent:work")).toMatch(/dom0 connected, protocol 4/);
  });

  test("into a mirage domain from a normal one: small writes, stdout/stderr and the exit code", async () => {
    const add = await system.clientVm("work", ["mirage", "test.Add"], "40 2\n");
    expect(add.stdout, explain(add)).toBe("42\n");
    expect(add.code).toBe(0);
    // No stderr EOF ever comes from the mirage side: the client still ends, with the status.
    const exit = await system.clientVm("work", ["mirage", "test.Exit3"], "x\n");
    expect(exit.code, explain(exit)).toBe(3);
    expect(exit.stderr).toBe("bye\n");
    const echo = await system.clientVm("work", ["mirage", "test.Echo"], "one\ntwo\n");
    expect(echo.stdout, explain(echo)).toBe("one\ntwo\n");
  });

  test("into a mirage domain: writes larger than the chunk size both ways", async () => {
    const big = await system.clientVm("work", ["mirage", "test.Big"]);
    expect(big.code, explain(big)).toBe(0);
    expect(big.stdout.length).toBe(BIG);
    expect(big.stderr).toBe("done\n");
    const input = "y".repeat(300_000);
    const count = await system.clientVm("work", ["mirage", "test.Count"], input);
    expect(count.stdout.trim(), explain(count)).toBe(String(input.length));
  });

  test("dom0 -> mirage with qrexec-client", async () => {
    const result = await system.client(["-d", "mirage", "user:QUBESRPC test.Add dom0"], "1 2\n");
    expect(result.stdout, explain(result)).toBe("3\n");
    expect(result.code).toBe(0);
  });

  test("out of a mirage domain (TRIGGER3, its own ring sizes and HELLO 3), small and large writes", async () => {
    const add = await system.clientVm("mirage", [...MIRAGE, "work", "test.Add"], "5 6\n");
    expect(add.stdout, explain(add)).toBe("11\n");
    expect(add.code).toBe(0);
    const big = await system.clientVm("mirage", [...MIRAGE, "work", "test.Big"]);
    expect(big.stdout.length, explain(big)).toBe(BIG);
    const input = "z".repeat(150_000);
    const count = await system.clientVm("mirage", [...MIRAGE, "work", "test.Count"], input);
    expect(count.stdout.trim(), explain(count)).toBe(String(input.length));
  });

  test("chunk-length bug, service side: the caller reports the peer protocol error, no hang", async () => {
    // Small writes still work with the bug: they fit one chunk.
    const small = await system.clientVm("work", ["buggy", "test.Add"], "2 2\n");
    expect(small.stdout, explain(small)).toBe("4\n");
    const started = Date.now();
    const big = await system.clientVm("work", ["buggy", "test.Big"]);
    expect(big.stderr, explain(big)).toMatch(CHUNK_BUG);
    expect(big.code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    // qrexec-client too.
    const direct = await system.client(["-d", "buggy", "user:QUBESRPC test.Big dom0"]);
    expect(direct.stderr, explain(direct)).toMatch(CHUNK_BUG);
    expect(direct.code).not.toBe(0);
    // The mirage agent's call ended (CONNECTION_TERMINATED) and the next call works.
    const next = await system.clientVm("work", ["buggy", "test.Add"], "3 4\n");
    expect(next.stdout, explain(next)).toBe("7\n");
  });

  test("chunk-length bug, caller side: our agent reports the peer protocol error and the call ends", async () => {
    const input = "w".repeat(100_000);
    const result = await system.clientVm("mirage", [...MIRAGE, "work", "test.Count"], input, { QRX_MIRAGE_BUGS: "chunk-length" });
    expect(result.code, explain(result)).not.toBe(0);
    await waitFor(() => CHUNK_BUG.test(system.logOf("agent:work")), "work's agent to log the chunk-length bug");
    // Under the chunk size the knob changes nothing.
    const small = await system.clientVm("mirage", [...MIRAGE, "work", "test.Count"], "12345", { QRX_MIRAGE_BUGS: "chunk-length" });
    expect(small.stdout.trim(), explain(small)).toBe("5");
  });

  test("TRIGGER3 ident bug: the daemon refuses the request and names the bug", async () => {
    const result = await system.clientVm("buggy", [...MIRAGE, "work", "test.Add"], "1 1\n");
    expect(result.code, explain(result)).toBe(126);
    expect(result.stderr).toBe("Request refused\n");
    await waitFor(
      () => /request refused: peer protocol error: TRIGGER3 carries the request id in the service-name field \(mirage-qubes 2\.0 bug\)/.test(system.logOf("daemon:buggy")),
      "the daemon to name the TRIGGER3 bug",
    );
    // The faithful mirage agent's TRIGGER3 (same profile, no knob) is fine.
    const fine = await system.clientVm("mirage", [...MIRAGE, "work", "test.Add"], "1 1\n");
    expect(fine.stdout, explain(fine)).toBe("2\n");
  });

  test.if(transport === "shm")("an oversize service name toward the 1 KiB ring: refused before sending, nothing crashes", async () => {
    const long = `test.Echo+${"a".repeat(1100)}`;
    // dom0 -> mirage: the daemon refuses to forward it; qrexec-client fails cleanly.
    const direct = await system.client(["-d", "mirage", `user:QUBESRPC ${long} dom0`]);
    expect(direct.code, explain(direct)).not.toBe(0);
    expect(direct.stderr).toMatch(/refused the command/);
    await waitFor(() => /too long for the agent of mirage: control message of \d+ bytes does not fit the peer's 1024-byte ring/.test(system.logOf("daemon:mirage")), "the daemon's clear error");
    // VM -> mirage through the policy: the caller gets a refusal, not a hang.
    const viaVm = await system.clientVm("work", ["mirage", long], "x");
    expect(viaVm.code, explain(viaVm)).toBe(126);
    // The same name fits a Linux agent's 4 KiB ring.
    const linux = await system.clientVm("mirage", [...MIRAGE, "work", "test.Echo+" + "b".repeat(900)], "fits\n");
    expect(linux.code, explain(linux)).toBe(0);
    // Nothing crashed: the next calls work.
    expect(system.vms.get("mirage")!.daemon.exitCode).toBeNull();
    expect(system.vms.get("mirage")!.agent.exitCode).toBeNull();
    const next = await system.clientVm("work", ["mirage", "test.Add"], "8 8\n");
    expect(next.stdout, explain(next)).toBe("16\n");
    const nextDirect = await system.client(["-d", "mirage", "user:QUBESRPC test.Add dom0"], "1 1\n");
    expect(nextDirect.stdout, explain(nextDirect)).toBe("2\n");
  });
});
