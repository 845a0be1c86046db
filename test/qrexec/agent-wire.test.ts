// qrexec-agent on the wire: a raw-frame peer plays dom0 over the socket transport and checks the
// exact messages (order, EOFs, exit code last, trigger forwarding, refusals, hostile input).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Connection } from "../../src/io/connection.ts";
import {
  decodeExecParams,
  decodeTrigger3,
  decodeTrigger4,
  encodeExecCommand,
  encodeServiceConnect,
  encodeServiceParams,
  encodeTrigger4,
  fieldText,
  frame,
} from "../../src/protocol/codec.ts";
import * as C from "../../src/protocol/constants.ts";
import { FramePeer, type RawMessage } from "../helpers/frame-peer.ts";
import { tempDir } from "../helpers/paths.ts";
import { BIN } from "../helpers/system.ts";

const AGENT_DOMAIN = 5;
let dir: ReturnType<typeof tempDir>;
let agent: Subprocess;
let agentLog: string[] = [];
let control: FramePeer;
let agentSocket: string;
let nextPort = 600;

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => new TextEncoder().encode(value);

function exitCodeOf(message: RawMessage): number {
  return new DataView(message.payload.buffer, message.payload.byteOffset).getInt32(0, true);
}

async function startAgent(version: number): Promise<void> {
  agentSocket = join(dir.path, "agent.sock");
  agent = Bun.spawn([join(BIN, "qrexec-agent"), `--agent-socket=${agentSocket}`], {
    env: {
      ...process.env,
      VCHAN_DOMAIN: String(AGENT_DOMAIN),
      QRX_VCHAN: "socket",
      VCHAN_SOCKET_DIR: dir.path,
      QREXEC_SERVICE_PATH: join(dir.path, "rpc"),
      QUBES_RPC_CONFIG_PATH: join(dir.path, "config"),
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  agentLog = [];
  void (async () => {
    for await (const chunk of agent.stderr as ReadableStream<Uint8Array>)
      agentLog.push(text(chunk));
  })();
  control = await FramePeer.connectVchan(dir.path, AGENT_DOMAIN, 0, C.VCHAN_BASE_PORT);
  expect(await control.receiveHello()).toBe(4);
  control.sendHello(version);
}

/** Runs `command` as dom0 would (EXEC_CMDLINE or JUST_EXEC) and returns every data message. */
async function exec(
  command: string,
  stdin: string[] = [""],
  type = C.MSG_EXEC_CMDLINE,
): Promise<RawMessage[]> {
  const port = nextPort++;
  const listener = FramePeer.listenVchan(dir.path, 0, AGENT_DOMAIN, port);
  control.send(type, encodeExecCommand({ connectDomain: 0, connectPort: port }, command));
  const data = await listener.accepted;
  listener.stop();
  expect(await data.receiveHello().catch((error) => `${error}\n${agentLog.join("")}`)).toBe(4);
  data.sendHello(4);
  for (const chunk of stdin) data.send(C.MSG_DATA_STDIN, bytes(chunk));
  const messages = await data.messagesUntilClose();
  const terminated = await control.receive();
  expect(terminated?.type).toBe(C.MSG_CONNECTION_TERMINATED);
  expect(decodeExecParams(terminated!.payload)).toMatchObject({
    connectDomain: 0,
    connectPort: port,
  });
  return messages;
}

function summary(messages: RawMessage[]): string[] {
  return messages.map((message) => {
    const name =
      {
        [C.MSG_DATA_STDOUT]: "STDOUT",
        [C.MSG_DATA_STDERR]: "STDERR",
        [C.MSG_DATA_EXIT_CODE]: "EXIT",
      }[message.type] ?? `0x${message.type.toString(16)}`;
    return message.type === C.MSG_DATA_EXIT_CODE
      ? `EXIT ${exitCodeOf(message)}`
      : `${name} ${JSON.stringify(text(message.payload))}`;
  });
}

beforeAll(async () => {
  dir = tempDir("qrx-agent-");
  mkdirSync(join(dir.path, "rpc"));
  writeFileSync(join(dir.path, "rpc", "test.Add"), "#!/bin/sh\nread a b; echo $((a+b))\n", {
    mode: 0o755,
  });
  writeFileSync(join(dir.path, "rpc", "test.Err"), "#!/bin/sh\necho oops >&2; exit 3\n", {
    mode: 0o755,
  });
  await startAgent(4);
});

afterAll(async () => {
  agent.kill("SIGTERM");
  await agent.exited;
  dir.remove();
});

describe("qrexec-agent on the wire", () => {
  test("test.Add: stdout data, one EOF per stream, EXIT_CODE last", async () => {
    const messages = summary(await exec("user:QUBESRPC test.Add dom0", ["11 22\n", ""]));
    expect(messages.at(-1)).toBe("EXIT 0");
    expect(messages.slice(0, -1).sort()).toEqual(
      ['STDERR ""', 'STDOUT ""', 'STDOUT "33\\n"'].sort(),
    );
    expect(messages.indexOf('STDOUT "33\\n"')).toBeLessThan(messages.indexOf('STDOUT ""'));
  });

  test("stderr is captured, the status comes last", async () => {
    const messages = summary(await exec("user:QUBESRPC test.Err dom0"));
    expect(messages.at(-1)).toBe("EXIT 3");
    expect(messages).toContain('STDERR "oops\\n"');
    expect(messages.filter((m) => m === 'STDERR ""').length).toBe(1);
    expect(messages.filter((m) => m === 'STDOUT ""').length).toBe(1);
  });

  test("a missing service: both EOFs, then 127", async () => {
    expect(summary(await exec("user:QUBESRPC test.Nothing dom0"))).toEqual([
      'STDOUT ""',
      'STDERR ""',
      "EXIT 127",
    ]);
  });

  test("a command that does not parse: 125", async () => {
    expect(summary(await exec("user:QUBESRPCtest.Add dom0")).at(-1)).toBe("EXIT 125");
  });

  test("JUST_EXEC sends only the exit code", async () => {
    expect(summary(await exec("user:QUBESRPC test.Add dom0", [], C.MSG_JUST_EXEC))).toEqual([
      "EXIT 0",
    ]);
    expect(summary(await exec("user:QUBESRPC test.None dom0", [], C.MSG_JUST_EXEC))).toEqual([
      "EXIT 127",
    ]);
  });

  test("a trigger is forwarded with ident SOCKET<n>; REFUSED closes the client", async () => {
    const client = await Connection.connect(agentSocket);
    client.write(
      frame(
        C.MSG_TRIGGER_SERVICE4,
        encodeTrigger4({ source: "", target: "vault", ident: "SOCKET", service: "test.Add+x" }),
      ),
    );
    const forwarded = await control.receive();
    expect(forwarded?.type).toBe(C.MSG_TRIGGER_SERVICE4);
    const trigger = decodeTrigger4(forwarded!.payload);
    expect(fieldText(trigger.target)).toBe("vault");
    expect(fieldText(trigger.service)).toBe("test.Add+x");
    expect(fieldText(trigger.ident)).toMatch(/^SOCKET\d+$/);
    control.send(C.MSG_SERVICE_REFUSED, encodeServiceParams(trigger.ident));
    expect(await client.read(8)).toBeNull();
  });

  test("SERVICE_CONNECT hands raw exec_params to the client; its close is reported", async () => {
    const client = await Connection.connect(agentSocket);
    client.write(
      frame(
        C.MSG_TRIGGER_SERVICE4,
        encodeTrigger4({ source: "", target: "vault", ident: "SOCKET", service: "test.Add" }),
      ),
    );
    const trigger = decodeTrigger4((await control.receive())!.payload);
    control.send(
      C.MSG_SERVICE_CONNECT,
      encodeServiceConnect({ connectDomain: 7, connectPort: 700 }, trigger.ident),
    );
    expect(decodeExecParams((await client.read(8))!)).toMatchObject({
      connectDomain: 7,
      connectPort: 700,
    });
    // A second CONNECT for the same request is ignored (§13.9).
    control.send(
      C.MSG_SERVICE_CONNECT,
      encodeServiceConnect({ connectDomain: 7, connectPort: 702 }, trigger.ident),
    );
    client.close();
    const terminated = await control.receive();
    expect(terminated?.type).toBe(C.MSG_CONNECTION_TERMINATED);
    expect(decodeExecParams(terminated!.payload)).toMatchObject({
      connectDomain: 7,
      connectPort: 700,
    });
  });

  test("hostile input: a bad trigger closes its client; unknown messages ignored", async () => {
    const bad = await Connection.connect(agentSocket);
    bad.write(frame(C.MSG_TRIGGER_SERVICE3, new Uint8Array(100)));
    expect(await bad.read(8)).toBeNull();
    const truncated = await Connection.connect(agentSocket);
    truncated.write(new Uint8Array([0x13, 0x02, 0, 0, 0xff]));
    truncated.close();
    control.send(0x2ff, bytes("junk"));
    // Still serving.
    const messages = summary(await exec("user:QUBESRPC test.Add dom0", ["1 1\n", ""]));
    expect(messages).toContain('STDOUT "2\\n"');
    expect(agentLog.join("")).toMatch(/unknown type 0x2ff/);
    expect(agentLog.join("")).toMatch(/refused/);
  });
});

describe("qrexec-agent toward an older daemon", () => {
  test("a v3 daemon gets TRIGGER3 (§15.1)", async () => {
    agent.kill("SIGTERM");
    await agent.exited;
    control.close();
    await startAgent(3);
    const client = await Connection.connect(agentSocket);
    client.write(
      frame(
        C.MSG_TRIGGER_SERVICE4,
        encodeTrigger4({ source: "", target: "vault", ident: "SOCKET", service: "test.Add" }),
      ),
    );
    const forwarded = await control.receive();
    expect(forwarded?.type).toBe(C.MSG_TRIGGER_SERVICE3);
    expect(fieldText(decodeTrigger3(forwarded!.payload).service)).toBe("test.Add");
    expect(existsSync(agentSocket)).toBe(true);
    client.close();
  });
});
