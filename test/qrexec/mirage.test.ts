// The MirageOS peer profile (qrexec-agent/qrexec-client-vm --peer-profile=mirage, spec §14):
// calls into and out of a mirage-profile domain through our real daemons and clients, both vchan
// transports; the 1 KiB control ring (oversize names refused before sending); the known
// mirage-qubes 2.0 wire bugs, reproduced with QRX_MIRAGE_BUGS, reported as peer protocol errors.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Connection } from "../../src/io/connection.ts";
import { Vchan } from "../../src/native.ts";
import {
  decodeExecParams,
  decodeTrigger3,
  encodeExecCommand,
  encodeServiceConnect,
  encodeTrigger4,
  fieldText,
  frame,
} from "../../src/protocol/codec.ts";
import * as C from "../../src/protocol/constants.ts";
import { validateAgentMessage } from "../../src/protocol/validate.ts";
import { FramePeer, type RawMessage } from "../helpers/frame-peer.ts";
import { tempDir } from "../helpers/paths.ts";
import { BIN, QrexecSystem, waitFor, type Transport } from "../helpers/system.ts";

const TRANSPORTS: Transport[] = ["shm", "socket"];
setDefaultTimeout(60_000);
const MIRAGE = ["--peer-profile=mirage"];
const BIG = 200_000;
const CHUNK_BUG =
  /peer protocol error: chunk header carries the total remaining length \(mirage-qubes 2\.0 bug\)/;

describe.each(TRANSPORTS)("mirage peer profile over %s", (transport) => {
  let system: QrexecSystem;

  beforeAll(async () => {
    system = new QrexecSystem(transport);
    await system.startVm(2, "work");
    // Two mirage-profile domains: one faithful apart from its ring sizes, one with both bugs.
    await system.startVm(4, "mirage", { agentArgs: MIRAGE });
    await system.startVm(5, "buggy", {
      agentArgs: MIRAGE,
      agentEnv: { QRX_MIRAGE_BUGS: "chunk-length,trigger3-ident" },
    });
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
    await waitFor(
      () => /protocol 3/.test(system.logOf("agent:mirage")),
      "the mirage agent's dom0 connection",
    );
    expect(system.logOf("agent:mirage")).toMatch(/as a mirage peer/);
    expect(system.logOf("agent:work")).toMatch(/dom0 connected, protocol 4/);
  });

  test("into a mirage domain from a normal one: small writes, both streams, the code", async () => {
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

  test("out of a mirage domain (TRIGGER3, its rings, HELLO 3): small and big writes", async () => {
    const add = await system.clientVm("mirage", [...MIRAGE, "work", "test.Add"], "5 6\n");
    expect(add.stdout, explain(add)).toBe("11\n");
    expect(add.code).toBe(0);
    const big = await system.clientVm("mirage", [...MIRAGE, "work", "test.Big"]);
    expect(big.stdout.length, explain(big)).toBe(BIG);
    const input = "z".repeat(150_000);
    const count = await system.clientVm("mirage", [...MIRAGE, "work", "test.Count"], input);
    expect(count.stdout.trim(), explain(count)).toBe(String(input.length));
  });

  test("chunk-length bug, service side: the caller reports the protocol error", async () => {
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

  test("chunk-length bug, caller side: our agent reports it and the call ends", async () => {
    const input = "w".repeat(100_000);
    const result = await system.clientVm("mirage", [...MIRAGE, "work", "test.Count"], input, {
      QRX_MIRAGE_BUGS: "chunk-length",
    });
    expect(result.code, explain(result)).not.toBe(0);
    await waitFor(
      () => CHUNK_BUG.test(system.logOf("agent:work")),
      "work's agent to log the chunk-length bug",
    );
    // Under the chunk size the knob changes nothing.
    const small = await system.clientVm("mirage", [...MIRAGE, "work", "test.Count"], "12345", {
      QRX_MIRAGE_BUGS: "chunk-length",
    });
    expect(small.stdout.trim(), explain(small)).toBe("5");
  });

  test("TRIGGER3 ident bug: the daemon refuses the request and names the bug", async () => {
    const result = await system.clientVm("buggy", [...MIRAGE, "work", "test.Add"], "1 1\n");
    expect(result.code, explain(result)).toBe(126);
    expect(result.stderr).toBe("Request refused\n");
    await waitFor(
      () =>
        new RegExp(
          String.raw`request refused: peer protocol error: ` +
            String.raw`TRIGGER3 carries the request id in the service-name field ` +
            String.raw`\(mirage-qubes 2\.0 bug\)`,
        ).test(system.logOf("daemon:buggy")),
      "the daemon to name the TRIGGER3 bug",
    );
    // The faithful mirage agent's TRIGGER3 (same profile, no knob) is fine.
    const fine = await system.clientVm("mirage", [...MIRAGE, "work", "test.Add"], "1 1\n");
    expect(fine.stdout, explain(fine)).toBe("2\n");
  });

  test.if(transport === "shm")(
    "the 128-page cap: a caller's 1 MiB rings (513 pages) are refused, 64 KiB ones (33) are fine",
    async () => {
      const started = Date.now();
      const big = await system.clientVm(
        "work",
        ["--buffer-size=1048576", "mirage", "test.Add"],
        "1 1\n",
      );
      expect(big.code, explain(big)).not.toBe(0);
      expect(big.stderr, explain(big)).toMatch(
        /the peer's page cap is 128 pages, these rings \(1048576\/1048576 bytes\) need 513/,
      );
      // The client may be done before the agent's log line has been read from its stderr.
      await waitFor(
        () => /need more pages than the page cap of 128/.test(system.logOf("agent:mirage")),
        "the mirage agent's log line",
        5000,
      ).catch(() => {
        // Not in time: the expect below fails, showing the log it has.
      });
      expect(system.logOf("agent:mirage")).toMatch(/need more pages than the page cap of 128/);
      expect(Date.now() - started).toBeLessThan(10_000);
      const fits = await system.clientVm(
        "work",
        ["--buffer-size=65536", "mirage", "test.Add"],
        "1 1\n",
      );
      expect(fits.stdout, explain(fits)).toBe("2\n");
    },
  );

  test.if(transport === "shm")(
    "an oversize service name toward the 1 KiB ring: refused before sending, nothing crashes",
    async () => {
      const long = `test.Echo+${"a".repeat(1100)}`;
      // dom0 -> mirage: the daemon refuses to forward it; qrexec-client fails cleanly.
      const direct = await system.client(["-d", "mirage", `user:QUBESRPC ${long} dom0`]);
      expect(direct.code, explain(direct)).not.toBe(0);
      expect(direct.stderr).toMatch(/refused the command/);
      await waitFor(
        () =>
          new RegExp(
            String.raw`too long for the agent of mirage: ` +
              String.raw`control message of \d+ bytes does not fit the peer's 1024-byte ring`,
          ).test(system.logOf("daemon:mirage")),
        "the daemon's clear error",
      );
      // VM -> mirage through the policy: the caller gets a refusal, not a hang.
      const viaVm = await system.clientVm("work", ["mirage", long], "x");
      expect(viaVm.code, explain(viaVm)).toBe(126);
      // The same name fits a Linux agent's 4 KiB ring.
      const linux = await system.clientVm(
        "mirage",
        [...MIRAGE, "work", "test.Echo+" + "b".repeat(900)],
        "fits\n",
      );
      expect(linux.code, explain(linux)).toBe(0);
      // Nothing crashed: the next calls work.
      expect(system.vms.get("mirage")!.daemon.exitCode).toBeNull();
      expect(system.vms.get("mirage")!.agent.exitCode).toBeNull();
      const next = await system.clientVm("work", ["mirage", "test.Add"], "8 8\n");
      expect(next.stdout, explain(next)).toBe("16\n");
      const nextDirect = await system.client(
        ["-d", "mirage", "user:QUBESRPC test.Add dom0"],
        "1 1\n",
      );
      expect(nextDirect.stdout, explain(nextDirect)).toBe("2\n");
    },
  );
});

// ------------------------------------------------------------------------------------------------
// The mirage agent frame by frame: a raw peer plays dom0 and the caller over the socket transport.

const AGENT_DOMAIN = 6;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => new TextEncoder().encode(value);

interface RawAgent {
  dir: ReturnType<typeof tempDir>;
  agent: Subprocess;
  log: string[];
  control: FramePeer;
  agentSocket: string;
}

async function startRawAgent(env: Record<string, string> = {}): Promise<RawAgent> {
  const dir = tempDir("qrx-mirage-");
  mkdirSync(join(dir.path, "rpc"));
  writeFileSync(join(dir.path, "rpc", "test.Add"), "#!/bin/sh\nread a b; echo $((a+b))\n", {
    mode: 0o755,
  });
  writeFileSync(join(dir.path, "rpc", "test.Err"), "#!/bin/sh\necho oops >&2; cat; exit 3\n", {
    mode: 0o755,
  });
  const agentSocket = join(dir.path, "agent.sock");
  const agent = Bun.spawn([join(BIN, "qrexec-agent"), `--agent-socket=${agentSocket}`, ...MIRAGE], {
    env: {
      ...process.env,
      VCHAN_DOMAIN: String(AGENT_DOMAIN),
      QRX_VCHAN: "socket",
      VCHAN_SOCKET_DIR: dir.path,
      QREXEC_SERVICE_PATH: join(dir.path, "rpc"),
      QUBES_RPC_CONFIG_PATH: join(dir.path, "config"),
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const log: string[] = [];
  void (async () => {
    for await (const chunk of agent.stderr as ReadableStream<Uint8Array>) log.push(text(chunk));
  })();
  const control = await FramePeer.connectVchan(dir.path, AGENT_DOMAIN, 0, C.VCHAN_BASE_PORT);
  return { dir, agent, log, control, agentSocket };
}

async function stopRawAgent(raw: RawAgent): Promise<void> {
  raw.agent.kill("SIGTERM");
  await raw.agent.exited;
  raw.control.close();
  raw.dir.remove();
}

function summary(messages: RawMessage[]): string[] {
  return messages.map((message) => {
    if (message.type === C.MSG_DATA_EXIT_CODE) {
      const { buffer, byteOffset } = message.payload;
      return `EXIT ${new DataView(buffer, byteOffset).getInt32(0, true)}`;
    }
    const name =
      { [C.MSG_DATA_STDOUT]: "STDOUT", [C.MSG_DATA_STDERR]: "STDERR" }[message.type] ??
      `0x${message.type.toString(16)}`;
    return `${name} ${JSON.stringify(text(message.payload))}`;
  });
}

describe("the mirage agent on the wire (socket transport)", () => {
  let raw: RawAgent;
  let nextPort = 600;

  beforeAll(async () => {
    raw = await startRawAgent();
    // It says HELLO 3 first on the control channel, and a v4 daemon's HELLO leaves it at 3.
    expect(await raw.control.receiveHello()).toBe(3);
    raw.control.sendHello(4);
  });

  afterAll(async () => {
    await stopRawAgent(raw);
  });

  /** EXEC_CMDLINE to a fresh port; checks the agent waits for our HELLO; returns the data peer. */
  async function open(command: string): Promise<{ data: FramePeer; port: number }> {
    const port = nextPort++;
    const listener = FramePeer.listenVchan(raw.dir.path, 0, AGENT_DOMAIN, port);
    raw.control.send(
      C.MSG_EXEC_CMDLINE,
      encodeExecCommand({ connectDomain: 0, connectPort: port }, command),
    );
    const data = await listener.accepted;
    listener.stop();
    // As the data client it waits for the caller's HELLO before its own (§14).
    const first = data.receive();
    expect(
      await Promise.race([first.then(() => "message"), Bun.sleep(300).then(() => "nothing")]),
    ).toBe("nothing");
    data.sendHello(4);
    const hello = await first;
    expect(hello?.type).toBe(C.MSG_HELLO);
    expect(new DataView(hello!.payload.buffer, hello!.payload.byteOffset).getUint32(0, true)).toBe(
      3,
    );
    return { data, port };
  }

  async function terminated(port: number): Promise<void> {
    const message = await raw.control.receive();
    expect(message?.type).toBe(C.MSG_CONNECTION_TERMINATED);
    expect(decodeExecParams(message!.payload)).toMatchObject({
      connectDomain: 0,
      connectPort: port,
    });
  }

  test('a call: stdout data, then STDOUT("") and EXIT_CODE; never a stderr EOF', async () => {
    const { data, port } = await open("user:QUBESRPC test.Add dom0");
    data.send(C.MSG_DATA_STDIN, bytes("11 22\n"));
    data.send(C.MSG_DATA_STDIN);
    expect(summary(await data.messagesUntilClose())).toEqual([
      'STDOUT "33\\n"',
      'STDOUT ""',
      "EXIT 0",
    ]);
    await terminated(port);
  });

  test("stderr data goes out, its EOF never does; stdout EOF only at completion", async () => {
    const { data, port } = await open("user:QUBESRPC test.Err dom0");
    data.send(C.MSG_DATA_STDIN, bytes("in\n"));
    data.send(C.MSG_DATA_STDIN);
    const messages = summary(await data.messagesUntilClose());
    expect(messages.slice(-2)).toEqual(['STDOUT ""', "EXIT 3"]);
    expect(messages).toContain('STDERR "oops\\n"');
    expect(messages).toContain('STDOUT "in\\n"');
    expect(messages.filter((m) => m === 'STDERR ""')).toEqual([]);
    await terminated(port);
  });

  test("a service that closes its stdout early: the EOF waits for completion", async () => {
    writeFileSync(
      join(raw.dir.path, "rpc", "test.Early"),
      "#!/bin/sh\nexec >&-\nread x\nexit 0\n",
      { mode: 0o755 },
    );
    const { data, port } = await open("user:QUBESRPC test.Early dom0");
    const first = data.receive();
    expect(
      await Promise.race([first.then(() => "message"), Bun.sleep(300).then(() => "nothing")]),
    ).toBe("nothing");
    data.send(C.MSG_DATA_STDIN, bytes("go\n"));
    data.send(C.MSG_DATA_STDIN);
    expect(summary([(await first)!, ...(await data.messagesUntilClose())])).toEqual([
      'STDOUT ""',
      "EXIT 0",
    ]);
    await terminated(port);
  });

  test('a missing service: STDOUT("") and 127, no stderr EOF', async () => {
    const { data, port } = await open("user:QUBESRPC test.Nothing dom0");
    expect(summary(await data.messagesUntilClose())).toEqual(['STDOUT ""', "EXIT 127"]);
    await terminated(port);
  });

  test("anything but DATA_STDIN drops the vchan (no exit code)", async () => {
    const { data, port } = await open("user:QUBESRPC test.Err dom0");
    data.send(C.MSG_DATA_STDOUT, bytes("not for a service"));
    const messages = summary(await data.messagesUntilClose());
    expect(messages.filter((m) => m.startsWith("EXIT"))).toEqual([]);
    await terminated(port);
    expect(raw.log.join("")).toMatch(
      /a mirage-qubes service reads only DATA_STDIN and drops the vchan/,
    );
  });

  test("unknown control messages are logged and ignored", async () => {
    raw.control.send(0x2ff, bytes("junk"));
    const { data, port } = await open("user:QUBESRPC test.Add dom0");
    data.send(C.MSG_DATA_STDIN, bytes("1 1\n"));
    data.send(C.MSG_DATA_STDIN);
    expect(summary(await data.messagesUntilClose())).toContain('STDOUT "2\\n"');
    await terminated(port);
    expect(raw.log.join("")).toMatch(/unknown type 0x2ff/);
  });

  test("outgoing: TRIGGER3 with a MIRAGE<25 digits> request id, the real service", async () => {
    const client = await Connection.connect(raw.agentSocket);
    client.write(
      frame(
        C.MSG_TRIGGER_SERVICE4,
        encodeTrigger4({ source: "", target: "work", ident: "SOCKET", service: "test.Add+x" }),
      ),
    );
    const forwarded = await raw.control.receive();
    expect(forwarded?.type).toBe(C.MSG_TRIGGER_SERVICE3);
    const trigger = decodeTrigger3(forwarded!.payload);
    expect(fieldText(trigger.ident)).toMatch(/^MIRAGE\d{25}$/);
    expect(fieldText(trigger.service)).toBe("test.Add+x");
    expect(fieldText(trigger.target)).toBe("work");
    raw.control.send(
      C.MSG_SERVICE_CONNECT,
      encodeServiceConnect({ connectDomain: 7, connectPort: 700 }, trigger.ident),
    );
    expect(decodeExecParams((await client.read(8))!)).toMatchObject({
      connectDomain: 7,
      connectPort: 700,
    });
    client.close();
    await terminated(700).catch(async () => {});
  });
});

describe("the mirage agent's bug knobs on the wire (socket transport)", () => {
  test("trigger3-ident: the request id goes where the service name belongs", async () => {
    const raw = await startRawAgent({ QRX_MIRAGE_BUGS: "trigger3-ident" });
    try {
      expect(await raw.control.receiveHello()).toBe(3);
      raw.control.sendHello(3);
      const client = await Connection.connect(raw.agentSocket);
      client.write(
        frame(
          C.MSG_TRIGGER_SERVICE4,
          encodeTrigger4({ source: "", target: "work", ident: "SOCKET", service: "test.Add" }),
        ),
      );
      const forwarded = await raw.control.receive();
      expect(forwarded?.type).toBe(C.MSG_TRIGGER_SERVICE3);
      const trigger = decodeTrigger3(forwarded!.payload);
      expect(fieldText(trigger.service)).toBe(fieldText(trigger.ident));
      expect(fieldText(trigger.service)).toMatch(/^MIRAGE\d{25}$/);
      // What our daemon makes of it.
      const verdict = validateAgentMessage(
        { type: forwarded!.type, len: forwarded!.payload.length },
        forwarded!.payload,
        3,
      );
      expect(verdict).toMatchObject({
        kind: "refused",
        reason: expect.stringMatching(
          /TRIGGER3 carries the request id in the service-name field \(mirage-qubes 2\.0 bug\)/,
        ),
      });
      client.close();
    } finally {
      await stopRawAgent(raw);
    }
  });

  test("chunk-length: a write over the chunk limit; each header has the total left", async () => {
    const raw = await startRawAgent({ QRX_MIRAGE_BUGS: "chunk-length" });
    try {
      expect(await raw.control.receiveHello()).toBe(3);
      raw.control.sendHello(4);
      writeFileSync(
        join(raw.dir.path, "rpc", "test.Big"),
        "#!/bin/sh\nhead -c 150000 /dev/zero\n",
        { mode: 0o755 },
      );
      const port = 650;
      const listener = FramePeer.listenVchan(raw.dir.path, 0, AGENT_DOMAIN, port);
      raw.control.send(
        C.MSG_EXEC_CMDLINE,
        encodeExecCommand({ connectDomain: 0, connectPort: port }, "user:QUBESRPC test.Big dom0"),
      );
      const data = await listener.accepted;
      listener.stop();
      data.sendHello(4);
      expect(await data.receiveHello()).toBe(3);
      data.send(C.MSG_DATA_STDIN);
      // Read the raw byte stream: header, chunk body (at most 65536), header, ...
      const lengths: number[] = [];
      let left = 150_000;
      while (left > 0) {
        const head = (await data.connection.read(8))!;
        const view = new DataView(head.buffer, head.byteOffset);
        expect(view.getUint32(0, true)).toBe(C.MSG_DATA_STDOUT);
        lengths.push(view.getUint32(4, true));
        const chunk = Math.min(left, C.MAX_DATA_CHUNK_V3);
        expect((await data.connection.read(chunk))!.length).toBe(chunk);
        left -= chunk;
      }
      expect(lengths).toEqual([150_000, 150_000 - 65_536, 150_000 - 2 * 65_536]);
      expect(summary(await data.messagesUntilClose())).toEqual(['STDOUT ""', "EXIT 0"]);
    } finally {
      await stopRawAgent(raw);
    }
  });
});

// ------------------------------------------------------------------------------------------------
// Ring sizes and the page cap, as the shm vchan reports them.

describe("the mirage agent's vchans (shm)", () => {
  test("control vchan: reads 1024, writes 2048 bytes, one page; Linux: 4096/4096", async () => {
    for (const [args, read, write, pages] of [
      [MIRAGE, 1024, 2048, 1],
      [[], 4096, 4096, 3],
    ] as const) {
      const dir = tempDir("qrx-mirage-shm-");
      const agent = Bun.spawn(
        [join(BIN, "qrexec-agent"), `--agent-socket=${join(dir.path, "agent.sock")}`, ...args],
        {
          env: {
            ...process.env,
            VCHAN_DOMAIN: String(AGENT_DOMAIN),
            QRX_VCHAN: "shm",
            QRX_VCHAN_DIR: dir.path,
            QREXEC_SERVICE_PATH: dir.path,
          },
          stdio: ["ignore", "ignore", "ignore"],
        },
      );
      try {
        const vchan = Vchan.client({
          localDomain: 0,
          remoteDomain: AGENT_DOMAIN,
          port: C.VCHAN_BASE_PORT,
          backend: "shm",
          dir: dir.path,
          timeoutMs: 10_000,
        });
        const info = vchan.info();
        // Seen from dom0 (the client): what the agent writes is what we read.
        expect({
          agentReads: info.writeRingBytes,
          agentWrites: info.readRingBytes,
          pages: info.pages,
        }).toEqual({ agentReads: read, agentWrites: write, pages });
        vchan.close();
      } finally {
        agent.kill("SIGTERM");
        await agent.exited;
        dir.remove();
      }
    }
  });
});
